"""The worker's runner in this process, with tiny trainers (Python scripts) instead of a real one: how
a trainer's reports and exit become the job's state, and the worker registry's current job."""

import dataclasses
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from app.core.db import Database
from app.core.jobs import Framework, JobStatus
from app.core.settings import get_settings
from app.core.storage import get_storage
from app.models import JobEvent, TrainingJob
from app.training import frameworks
from tests.factories import make_job
from workers.identity import WorkerIdentity
from workers.lock import GpuLease
from workers.runner import AttemptOutcome, TrainingRunner
from workers.tasks.training import check_outcome

pytestmark = pytest.mark.integration

GOOD_START = """
from trainyard_sdk import TrainerSDK
sdk = TrainerSDK.from_env()
sdk.report_started(pid=1)
sdk.report_progress(0, 1, phase="setup")
"""


@dataclass
class Run:
    job_id: int
    outcome: AttemptOutcome | None
    told: list[int | None]  # the runner's current job, as the registry was told it on each change


@pytest.fixture
def make_runner(
    db: Database, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., TrainingRunner]]:
    """A CPU worker's runner (on the host that the settings name when it runs) whose trainer for
    `framework` is `script`; its spare trainer process is stopped at the end."""
    runners: list[TrainingRunner] = []

    def make(script: str, framework: Framework = Framework.PYTORCH) -> TrainingRunner:
        identity = WorkerIdentity(name="runner-test", device="cpu", queues=("training",))
        lease = GpuLease(redis_client, identity.device_key, identity.name, ttl_seconds=30)
        trainer = tmp_path / "trainer.py"
        trainer.write_text(script)
        spec = dataclasses.replace(frameworks.FRAMEWORKS[framework], trainer_args=(str(trainer),))
        monkeypatch.setitem(frameworks.FRAMEWORKS, framework, spec)
        runners.append(TrainingRunner(db, get_storage(), lease, identity, get_settings()))
        return runners[-1]

    yield make
    for runner in runners:
        runner.trainers.close()


@pytest.fixture
def run_trainer(db: Database, make_runner: Callable[..., TrainingRunner]) -> Callable[..., Run]:
    """Run a queued job of `framework` whose trainer is `script`, on a CPU worker."""

    def run(script: str, framework: Framework = Framework.PYTORCH, **job: Any) -> Run:
        runner = make_runner(script, framework)
        job_id = queue_job(db, framework, **job)
        told: list[int | None] = []
        runner.on_job_change = lambda: told.append(runner.current_job)
        outcomes = runner.serve()  # the worker takes the one queued job
        return Run(job_id, outcomes[0] if outcomes else None, told)

    return run


def queue_job(db: Database, framework: Framework = Framework.PYTORCH, **job: Any) -> int:
    if framework == Framework.PYTORCH:
        job = {"task_type": "classification", "dataset_path": None, **job}
    with db.session() as s:
        return make_job(s, framework=framework, **job).id


def job_and_events(db: Database, job_id: int) -> tuple[TrainingJob, list[JobEvent]]:
    with db.session() as s:
        job = s.get_one(TrainingJob, job_id)
        s.expunge(job)
        events = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))
        for event in events:
            s.expunge(event)
    return job, events


def test_a_line_that_is_not_a_report_fails_the_job_at_once(
    run_trainer: Callable[..., Run], db: Database
) -> None:
    script = (
        GOOD_START
        + """
import os, time
with os.fdopen(int(os.environ["TRAINYARD_REPORT_FD"]), "w") as pipe:
    pipe.write('{"type": "progress", "epoch": "one"}\\n')
time.sleep(600)  # a trainer that would otherwise sit there until its lease expired
"""
    )
    started = time.monotonic()
    run = run_trainer(script)
    assert time.monotonic() - started < 60
    job, events = job_and_events(db, run.job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "INVALID_REPORT")
    assert "progress.epoch" in (job.error_message or "")
    assert [e.type for e in events][-2:] == ["error", "status"]
    assert [e.data for e in events if e.type == "progress"] == [
        {"epoch": 0, "epochs": 1, "batch": None, "batches": None, "eta_s": None, "phase": "setup"}
    ]
    assert job.progress == {
        "epoch": 0,
        "epochs": 1,
        "batch": None,
        "batches": None,
        "eta_s": None,
        "phase": "setup",
    }


def test_the_registry_is_told_the_current_job_at_the_claim_and_at_the_end(
    run_trainer: Callable[..., Run], db: Database
) -> None:
    run = run_trainer(GOOD_START + "sdk.report_completed({'epochs_completed': 1})\nsdk.close()\n")
    assert run.told == [run.job_id, None]
    job, _ = job_and_events(db, run.job_id)
    assert job.status == JobStatus.COMPLETED
    check_outcome(run.outcome)  # a completed job is a successful task


def test_the_job_records_the_worker_and_the_host_that_ran_each_attempt(
    run_trainer: Callable[..., Run], db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINYARD_HOST", "rack-9")  # a container's hostname says nothing
    get_settings.cache_clear()
    run = run_trainer(GOOD_START + "sdk.report_completed({'epochs_completed': 1})\nsdk.close()\n")
    job, events = job_and_events(db, run.job_id)
    (placed,) = job.attempts or []
    assert (placed["attempt"], placed["worker"], placed["host"], placed["outcome"]) == (
        1,
        "runner-test",
        "rack-9",
        "completed",
    )
    assert placed["ended_at"] is not None and job.host == "rack-9"
    running = next(e.data for e in events if e.data.get("status") == "running")
    assert (running["worker"], running["host"]) == ("runner-test", "rack-9")


def test_a_dataset_folder_missing_on_this_host_fails_the_job_naming_the_host(
    run_trainer: Callable[..., Run], db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # With S3 the API accepts an import-root folder it cannot see (app/training/dataset_check.py):
    # the worker's host is the first to look, and says which host lacked it.
    monkeypatch.setenv("TRAINYARD_HOST", "rack-9")
    get_settings.cache_clear()
    absent = str(tmp_path / "on-another-host" / "shapes")
    run = run_trainer(GOOD_START, Framework.ULTRALYTICS, dataset_path=absent)
    job, events = job_and_events(db, run.job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "DATASET_NOT_FOUND")
    assert job.error_message == (
        f"could not start the trainer on host rack-9: dataset folder {absent!r} does not exist on this host "
        "(a dataset_path outside storage is read on the host of the worker that runs the job)"
    )
    assert [e.data["code"] for e in events if e.type == "error"] == ["DATASET_NOT_FOUND"]


def test_a_trainer_crash_is_retried_with_the_outputs_tail(
    run_trainer: Callable[..., Run], db: Database
) -> None:
    run = run_trainer(GOOD_START + "sdk.close()\nprint('about to fail')\nraise SystemExit(3)\n")
    job, events = job_and_events(db, run.job_id)
    error = next(e.data for e in events if e.type == "error")
    assert error["code"] == "TRAINER_CRASHED" and error["retrying"] is True
    assert "trainer exited with code 3" in error["message"] and "about to fail" in error["message"]
    assert (job.status, job.attempt) == (JobStatus.QUEUED, 2)
    assert [(a["attempt"], a["outcome"]) for a in job.attempts or []] == [(1, "requeued")]
    assert job.host is None  # attempt 2 waits for a worker
    check_outcome(run.outcome)  # retried: not a failure of the task


def test_the_config_shown_is_the_one_that_ran_on_this_device(
    run_trainer: Callable[..., Run], db: Database, tmp_path: Path
) -> None:
    script = """
from trainyard_sdk import TrainerSDK
sdk = TrainerSDK.from_env()
sdk.report_completed({"epochs_completed": 1, "model_info": {"ran_with": sdk.context.config}})
sdk.close()
"""
    asked = {"epochs": 1, "workers": 8, "amp": True, "imgsz": 96}
    run = run_trainer(script, Framework.ULTRALYTICS, config=asked, dataset_path=str(tmp_path))
    job, events = job_and_events(db, run.job_id)
    ran = {"epochs": 1, "workers": 0, "amp": False, "imgsz": 96}  # Ultralytics on a CPU
    assert job.status == JobStatus.COMPLETED
    assert job.config == ran and (job.results or {})["model_info"]["ran_with"] == ran
    stored = (
        get_storage().get_file(f"{job.storage_prefix}/artifacts/config.yaml", tmp_path / "c.yaml").read_text()
    )
    assert "workers: 0" in stored and "amp: false" in stored
    said = [e.data["message"] for e in events if e.type == "log" and e.data["source"] == "system"]
    assert "config fitted to this worker: amp true -> false, workers 8 -> 0" in said


# What a trainer process can tell of itself: whether torch was imported before its script ran (a spare
# trainer process imports it ahead), and everything a cold `python trainer.py` would have.
SELF_REPORT = """
import json, os, sys
preloaded = "torch" in sys.modules
from trainyard_sdk import TrainerSDK
sdk = TrainerSDK.from_env()
facts = {
    "pid": os.getpid(),
    "own_session": os.getsid(0) == os.getpid(),
    "preloaded": preloaded,
    "name": __name__,
    "argv": sys.argv,
    "path0": sys.path[0],
    "cwd": os.getcwd(),
    "job_id": os.environ.get("JOB_ID"),
    "worker_only": os.environ.get("WORKER_ONLY"),
    "stdin": os.readlink("/proc/self/fd/0"),
}
sdk.report_completed({"epochs_completed": 1, "model_info": facts})
sdk.close()
"""


def self_reports(db: Database, *job_ids: int) -> list[dict[str, Any]]:
    facts = []
    for job_id in job_ids:
        job, _ = job_and_events(db, job_id)
        assert job.status == JobStatus.COMPLETED, job.error_message
        facts.append((job.results or {})["model_info"])
    return facts


@pytest.mark.parametrize("warm", [True, False])
def test_the_next_job_runs_in_a_spare_trainer_process_exactly_as_in_a_cold_one(
    make_runner: Callable[..., TrainingRunner],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    warm: bool,
) -> None:
    monkeypatch.setenv("TRAINYARD_WARM_TRAINER", str(warm).lower())
    monkeypatch.setenv("WORKER_ONLY", "1")  # the worker's environment reaches its trainers
    monkeypatch.setenv("JOB_ID", "999")  # but not its own values of a job's variables
    get_settings.cache_clear()
    runner = make_runner(SELF_REPORT)
    first, second = queue_job(db, name="first"), queue_job(db, name="second")
    assert [o.job_id for o in runner.serve()] == [first, second]
    facts = self_reports(db, first, second)
    # The first job had no spare yet; the second was handed the one started after the first, if any.
    assert [f["preloaded"] for f in facts] == [False, warm]
    assert facts[0]["pid"] != facts[1]["pid"]
    script = str(tmp_path / "trainer.py")
    for job_id, fact in zip((first, second), facts, strict=True):
        run_dir = str(get_settings().runs_dir / f"job-{job_id}" / "attempt-1")
        assert fact == {
            **fact,
            "own_session": True,
            "name": "__main__",
            "argv": [script],
            "path0": str(tmp_path),
            "cwd": run_dir,
            "job_id": str(job_id),
            "worker_only": "1",
            "stdin": "/dev/null",
        }
    # Between jobs a warm worker keeps the next one ready; that process goes with the worker.
    spare = runner.trainers.pid
    assert (spare is not None) == warm
    runner.trainers.close()
    if spare is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(spare, 0)


def test_a_spare_trainer_process_that_died_waiting_is_replaced_by_a_cold_one(
    make_runner: Callable[..., TrainingRunner], db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINYARD_WARM_TRAINER", "true")
    get_settings.cache_clear()
    runner = make_runner(SELF_REPORT)
    first = queue_job(db, name="first")
    runner.serve()
    spare = runner.trainers.pid
    assert spare is not None
    os.kill(spare, signal.SIGKILL)
    second = queue_job(db, name="second")
    runner.serve()
    facts = self_reports(db, first, second)
    assert facts[1]["preloaded"] is False and facts[1]["pid"] != spare
