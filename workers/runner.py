"""Runs one attempt of a training job on this worker: lease, trainer child process, reports, results.

The database is the truth: the attempt is claimed there (a duplicate or stale message claims
nothing), every write is fenced by the attempt, and a lost lease stops the trainer at once.
"""

import contextlib
import dataclasses
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from sqlalchemy.exc import DBAPIError

from app.core.db import Database
from app.core.errors import ErrorCode
from app.core.events import StaleAttempt
from app.core.jobs import JobStatus
from app.core.logging import attempt_var, job_id_var
from app.core.settings import Settings
from app.core.storage import Storage
from app.models import TrainingJob
from app.training import state
from app.training.frameworks import framework, preload_modules
from app.training.reports import apply_report, record_config
from trainyard_sdk.context import ENV_VARS, TrainerContext
from trainyard_sdk.reports import (
    OUTCOMES,
    AnyReport,
    BadReport,
    CheckpointReport,
    CompletedReport,
    FailedReport,
    LogReport,
    ReportType,
    parse_report,
)
from workers.datasets import DatasetMissing, Materialized
from workers.heartbeat import Heartbeat
from workers.identity import WorkerIdentity
from workers.inference import sharing
from workers.inputs import JobSpec, materialize_dataset, prepare
from workers.lock import GpuLease
from workers.trainer_process import SpareTrainer, kill_group

log = logging.getLogger("operations.training")

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LOG_BATCH = 200
WRITE_RETRIES = 3
# A run folder of a job in these states may belong to a live attempt (of another worker process here).
ACTIVE = (JobStatus.RUNNING, JobStatus.STOPPING)


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt left its job: the job's status and attempt afterwards, and why it failed."""

    job_id: int
    attempt: int
    status: JobStatus
    current_attempt: int
    error_code: str | None
    error_message: str | None

    @property
    def failed(self) -> bool:
        """The job failed with this attempt (a retried failure is a new attempt, not a failure)."""
        return self.status == JobStatus.FAILED and self.current_attempt == self.attempt


class TrainingRunner:
    def __init__(
        self,
        db: Database,
        storage: Storage,
        lease: GpuLease,
        worker: WorkerIdentity,
        settings: Settings,
        make_room: Callable[[], None] = lambda: None,
        on_job_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        # Empties this process's own model cache, once the lease is held (a model that finished loading
        # just before would otherwise sit in GPU memory beside the trainer).
        self.make_room = make_room
        self.storage = storage
        self.lease = lease
        self.worker = worker
        self.settings = settings
        self.current_job: int | None = None
        # Told when `current_job` changes, so the worker registry shows it at once (workers/cli.py).
        self.on_job_change = on_job_change
        # Set when the worker shuts down: the running attempt is handed back to the queue.
        self.shutdown = threading.Event()
        # Whether to take another job (False while the worker drains; workers/cli.py).
        self.accepting: Callable[[], bool] = lambda: True
        # The next job's trainer process, its imports done ahead (workers/trainer_process.py).
        self.trainers = SpareTrainer(
            self.trainer_env, settings.runs_dir, preload_modules(), enabled=settings.warm_trainer
        )

    def trainer_env(self) -> dict[str, str]:
        """A trainer's environment, but its job's own variables (trainyard_sdk/context.py)."""
        # The worker's own values of the context's variables must not leak into the trainer's.
        env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
        env["YOLO_CONFIG_DIR"] = str(self.settings.resolved_data_dir / "ultralytics")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def prepare_trainer(self) -> None:
        """Start the next job's trainer process now, while the worker waits, unless it takes no job."""
        if self.shutdown.is_set() or not self.accepting():
            return
        try:
            self.trainers.prepare()
        except Exception:  # a job will still get a trainer started for it
            log.warning("could not start a spare trainer process", exc_info=True)

    def serve(self) -> list[AttemptOutcome]:
        """Woken by a message: run the job the scheduler gives this worker (app/scheduling/), then the
        next, until none is left that it may run, so a GPU that frees up starts the next job at once.
        A draining or stopping worker takes no new job."""
        outcomes = []
        while not self.shutdown.is_set() and self.accepting():
            outcome = self._run_next()
            if outcome is None:
                break
            outcomes.append(outcome)
        return outcomes

    def _run_next(self) -> AttemptOutcome | None:
        """Claim the best job for this worker and run its attempt; None when nothing was left."""
        job_id_var.set(None)  # what is logged before a claim belongs to no job
        attempt_var.set(None)
        self.lease.acquire()
        try:
            spec = self._claim()
            if spec is None:
                log.info("no queued job for pool %s; back to waiting", self.worker.pool)
                return None
            job_id_var.set(spec.job_id)
            attempt_var.set(spec.attempt)
            log.info("running job %s attempt %s", spec.job_id, spec.attempt)
            self._set_current_job(spec.job_id)
            # The lease stops the GPU's other tenants from computing; this empties their caches too.
            self.make_room()
            sharing.make_room_for_training(self.worker, self.settings)
            Attempt(self, spec).run()
            return self._outcome(spec.job_id, spec.attempt)
        finally:
            if self.current_job is not None:
                self._set_current_job(None)
            self.lease.release()
            self.prepare_trainer()

    def sweep_scratch(self) -> None:
        """Remove the scratch folders of attempts that are over. A worker killed mid-attempt leaves its
        folder (checkpoints, a copy of the dataset's data.yaml) behind; the job went on elsewhere. A
        folder of a job's current, running attempt stays: another worker process of this host has it."""
        for folder in sorted(self.settings.runs_dir.glob("job-*/attempt-*")):
            try:
                job_id, attempt = int(folder.parent.name[4:]), int(folder.name[8:])
            except ValueError:
                continue
            with self.db.session() as session:
                job = session.get(TrainingJob, job_id)
                live = job is not None and job.attempt == attempt and job.status in ACTIVE
            if not live:
                log.info("removing the scratch folder of job %s attempt %s, which is over", job_id, attempt)
                shutil.rmtree(folder, ignore_errors=True)
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()  # the job's folder, once no attempt is left in it

    def _set_current_job(self, job_id: int | None) -> None:
        self.current_job = job_id
        try:
            self.on_job_change()
        except Exception:
            log.warning("could not tell the registry about job %s", job_id, exc_info=True)

    def _outcome(self, job_id: int, attempt: int) -> AttemptOutcome:
        with self.db.session() as session:
            job = session.get_one(TrainingJob, job_id)
            outcome = AttemptOutcome(
                job_id, attempt, JobStatus(job.status), job.attempt, job.error_code, job.error_message
            )
        if outcome.failed:
            log.error(
                "job %s attempt %s failed: %s: %s", job_id, attempt, outcome.error_code, outcome.error_message
            )
        else:
            log.info(
                "job %s attempt %s ended: the job is %s (attempt %s)",
                job_id,
                attempt,
                outcome.status,
                outcome.current_attempt,
            )
        return outcome

    def _claim(self) -> JobSpec | None:
        with self.db.session() as session:
            ttl = self.settings.lease_ttl_seconds
            worker = self.worker
            job = state.claim_next(session, worker.name, ttl, host=worker.host, pool=worker.pool)
            return None if job is None else JobSpec.of(job)


class Attempt:
    """One attempt: the trainer child, its two output streams, and the heartbeat."""

    def __init__(self, runner: TrainingRunner, spec: JobSpec) -> None:
        self.runner = runner
        self.spec = spec
        self.db = runner.db
        self.storage = runner.storage
        settings = runner.settings
        self.run_dir = settings.runs_dir / f"job-{spec.job_id}" / f"attempt-{spec.attempt}"
        # ("report", AnyReport), ("log", entry), ("invalid", reason) or ("closed", stream name).
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.heartbeat = Heartbeat(
            self.db,
            runner.lease,
            spec.job_id,
            spec.attempt,
            settings.heartbeat_seconds,
            settings.lease_ttl_seconds,
        )
        self.final_report: AnyReport | None = None  # completed, failed or stopped
        self.output_tail: list[str] = []
        self.stop_sent_at: float | None = None
        # The first non-log item met while batching logs, applied next so reports keep their order.
        self.held: tuple[str, Any] | None = None

    def run(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Fetching a dataset may outlast the lease: the heartbeat beats from the start.
        self.heartbeat.start()
        dataset: Materialized | None = None
        child: subprocess.Popen[bytes] | None = None
        try:
            try:
                self._fit_config()
                self._store_resolved_config()
                dataset = materialize_dataset(self.spec, self.db, self.storage)
                if dataset is not None and dataset.origin != "in place":
                    self._note(dataset.describe())
                context = prepare(
                    self.spec,
                    self.run_dir,
                    self.runner.worker.trainer_device,
                    dataset.path if dataset is not None else None,
                    self.storage,
                    self.runner.settings,
                )
                child = self._start_trainer(context)
            except StaleAttempt:
                raise
            except Exception as exc:
                missing = isinstance(exc, DatasetMissing)
                code = ErrorCode.DATASET_NOT_FOUND if missing else ErrorCode.INTERNAL_ERROR
                host = self.runner.worker.host  # in a fleet, which host lacked what
                self._write(state.fail, code, f"could not start the trainer on host {host}: {exc}")
                return
            if self._pump(child):
                self._finish(child.wait())
        except StaleAttempt as exc:
            log.error("%s; stopping the trainer", exc)
            if child is not None:
                kill_group(child)
        finally:
            self.heartbeat.stop()
            if child is not None and child.poll() is None:
                kill_group(child)
            if dataset is not None:
                dataset.release()  # the cache may evict it once no job uses it
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _note(self, message: str) -> None:
        """A line of the worker's own in the job's log (what it fetched, from where)."""
        self._write(
            apply_report, LogReport.model_validate({"level": "info", "message": message, "source": "system"})
        )

    # The trainer ---------------------------------------------------------------------------------
    def _fit_config(self) -> None:
        """Run (and show) the config as the trainer would really apply it on this worker's device."""
        spec = self.spec
        fitted = framework(spec.framework).fit_to_device(spec.config, self.runner.worker.trainer_device)
        if fitted != spec.config:
            self._write(record_config, fitted)
            self.spec = dataclasses.replace(spec, config=fitted)

    def _store_resolved_config(self) -> None:
        key = f"{self.spec.storage_prefix}/artifacts/config.yaml"
        self.storage.put_bytes(key, yaml.safe_dump(self.spec.config, sort_keys=True).encode())

    def _start_trainer(self, context: TrainerContext) -> subprocess.Popen[bytes]:
        def job_env(report_fd: int) -> dict[str, str]:
            with_pipe = context.model_copy(update={"report_fd": report_fd})
            return {**self.runner.trainer_env(), **with_pipe.to_env()}

        argv = list(framework(self.spec.framework).trainer_args)
        trainer = self.runner.trainers.run(argv, job_env, self.run_dir)
        assert trainer.process.stdout is not None
        threading.Thread(target=self._read_reports, args=(trainer.reports,), daemon=True).start()
        threading.Thread(target=self._read_output, args=(trainer.process.stdout,), daemon=True).start()
        return trainer.process

    def _read_reports(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                self.inbox.put(("report", parse_report(line)))
            except BadReport as exc:
                self.inbox.put(("invalid", f"{exc} (in {line[:200]!r})"))
        self.inbox.put(("closed", "reports"))

    def _read_output(self, stream: IO[bytes]) -> None:
        for raw in stream:
            # Progress bars redraw with \r; only the last state of a line is worth keeping.
            text = ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\n").split("\r")[-1].strip()
            if text:
                level = (
                    "WARNING" if "WARNING" in text else "ERROR" if text.startswith("Traceback") else "INFO"
                )
                self.inbox.put(("log", {"level": level, "message": text, "source": "system"}))
        self.inbox.put(("closed", "output"))

    # Reports -> job ------------------------------------------------------------------------------
    def _pump(self, child: subprocess.Popen[bytes]) -> bool:
        """Apply reports until both streams close; False when the lease was lost on the way."""
        open_streams = 2
        while open_streams:
            if self.heartbeat.lost.is_set():
                kill_group(child)
                return False
            if self.runner.shutdown.is_set():
                kill_group(child)
                self._write(state.hand_back, "worker shut down")
                return False
            self._pass_on_stop_request(child)
            try:
                kind, item = self.held or self.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            self.held = None
            if kind == "closed":
                open_streams -= 1
            elif kind == "invalid":
                log.error("job %s: the trainer sent a report that is not one: %s", self.spec.job_id, item)
                kill_group(child)
                self._write(
                    state.fail, ErrorCode.INVALID_REPORT, f"the trainer sent an invalid report: {item}"
                )
                return False
            elif kind == "log":
                self._apply_logs([item])
            else:
                self._apply(item)
        return not self.heartbeat.lost.is_set()

    def _pass_on_stop_request(self, child: subprocess.Popen[bytes]) -> None:
        """A user's stop (seen by the heartbeat) becomes SIGUSR1; a trainer that ignores it is killed."""
        if not self.heartbeat.stop_requested.is_set() or child.poll() is not None:
            return
        if self.stop_sent_at is None:
            self.stop_sent_at = time.monotonic()
            child.send_signal(signal.SIGUSR1)
        elif time.monotonic() - self.stop_sent_at > self.runner.settings.stop_grace_seconds:
            log.warning("trainer of job %s ignored the stop request; killing it", self.spec.job_id)
            kill_group(child)

    def _apply_logs(self, entries: list[dict[str, Any]]) -> None:
        # Take the log lines queued behind this one, so a chatty trainer costs one transaction per
        # batch; stop at the first other item, which is applied next.
        while len(entries) < LOG_BATCH:
            try:
                kind, item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if kind != "log":
                self.held = (kind, item)
                break
            entries.append(item)
        self.output_tail = (self.output_tail + [e["message"] for e in entries])[-20:]
        self._write(apply_report, LogReport.model_validate({"logs": entries}))

    def _apply(self, report: AnyReport) -> None:
        if report.type in OUTCOMES:
            self.final_report = report  # applied once the trainer has exited (_finish)
        elif isinstance(report, CheckpointReport):
            self._store_checkpoint(report)
        else:
            self._write(apply_report, report)

    def _store_checkpoint(self, report: CheckpointReport) -> None:
        snapshot = Path(report.path)
        key = f"{self.spec.storage_prefix}/weights/{report.resolved_kind}.pt"
        # Fence before touching storage: a stale attempt must not overwrite the new one's weights.
        self._write(state.renew_lease, self.runner.worker.name, self.runner.settings.lease_ttl_seconds)
        size = self.storage.put_file(key, snapshot)
        snapshot.unlink(missing_ok=True)
        self._write(apply_report, report.model_copy(update={"path": key, "size_bytes": size}))

    def _finish(self, exit_code: int) -> None:
        outcome = self.final_report
        if isinstance(outcome, CompletedReport) and exit_code == 0:
            for name, path in outcome.artifacts.items():
                if Path(path).is_file():
                    self.storage.put_file(f"{self.spec.storage_prefix}/artifacts/{name}", Path(path))
            self._write(apply_report, outcome)
        elif (outcome is not None and outcome.type == ReportType.STOPPED) or self.stop_sent_at is not None:
            self._write(state.stopped)
        else:
            if isinstance(outcome, FailedReport):
                code, message = outcome.error_code, outcome.message
            else:
                code = ErrorCode.TRAINER_CRASHED
                message = f"trainer exited with code {exit_code}: " + "\n".join(self.output_tail[-5:])
            settings = self.runner.settings
            self._write(
                state.fail_or_retry, code, message, settings.max_attempts, settings.retry_backoff_seconds
            )

    def _write(self, apply: Any, *args: Any) -> Any:
        """Apply one report in its own transaction, retrying a database hiccup a few times; a write
        that still fails is treated like a lost lease (the reconciler will give the job a new attempt)."""
        for attempt in range(WRITE_RETRIES):
            try:
                with self.db.session() as session:
                    return apply(session, self.spec.job_id, self.spec.attempt, *args)
            except DBAPIError as exc:
                if attempt == WRITE_RETRIES - 1:
                    raise StaleAttempt(self.spec.job_id, self.spec.attempt, -1) from exc
                log.warning("job %s: database write failed; retrying", self.spec.job_id, exc_info=True)
                time.sleep(1.0)
        return None
