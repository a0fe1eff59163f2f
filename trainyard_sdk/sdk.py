"""TrainerSDK: how any trainer process reports to Trainyard (docs/trainer-contract.md).

The worker starts a trainer as a child process with its context in the environment; the trainer calls
`TrainerSDK.from_env()`, reads its job from `sdk.context` and reports through the SDK. Every report is
one of the protocol's models (trainyard_sdk/reports.py), whichever transport carries it: the worker's
own pipe (`TRAINYARD_REPORT_FD`; the worker applies each report to the job, fenced by its attempt), or
HTTP to the callback API (`CALLBACK_URL` + `TRAINYARD_JOB_TOKEN`) for trainers that run anywhere.

Progress within an epoch goes out at most once every PROGRESS_EVERY_SECONDS; an epoch's end and a
change of phase always go out. Log entries are buffered and sent by a background thread: at 50
entries, every 5 seconds, and at once on ERROR. A failed flush never stops (nor slows) training: the
entries stay buffered (up to MAX_BUFFERED, oldest dropped first) and go out with a later flush.

This package needs pydantic and httpx only: no web framework, no database, no torch.
"""

import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any, Protocol

import httpx

from trainyard_sdk.context import TrainerContext
from trainyard_sdk.reports import (
    CheckpointReport,
    CompletedReport,
    FailedReport,
    LogEntry,
    LogReport,
    MetricsReport,
    Phase,
    ProgressReport,
    Report,
    ReportType,
    StartedReport,
    StoppedReport,
    TrainingResults,
)

log = logging.getLogger("operations.training")

PROGRESS_EVERY_SECONDS = 1.0
FLUSH_AT_ENTRIES = 50
FLUSH_EVERY_SECONDS = 5.0
MAX_BUFFERED = 10_000
BASIC_KEYS = frozenset(
    {"epochs", "imgsz", "batch", "lr0", "lr", "optimizer", "patience", "device", "workers", "seed"}
)


class Transport(Protocol):
    def send(self, report: Report) -> None: ...


class PipeTransport:
    """JSON lines on a file descriptor that the worker reads."""

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def send(self, report: Report) -> None:
        line = report.model_dump_json()
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


class ReportRefused(RuntimeError):
    """The API refused a report for good: a wrong token (401), a finished job or a stale attempt (409),
    or a malformed report (4xx). The trainer should stop; nothing it reports will be kept."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"report refused ({status}): {detail}")
        self.status = status


class HttpTransport:
    """Reports to the callback API (`POST {callback_url}/{started,progress,...}`), with the job token."""

    ENDPOINTS = {
        ReportType.STARTED: "started",
        ReportType.PROGRESS: "progress",
        ReportType.METRICS: "metrics",
        ReportType.CHECKPOINT: "checkpoint",
        ReportType.LOG: "log",
        ReportType.COMPLETED: "completion",
        ReportType.FAILED: "completion",
        ReportType.STOPPED: "completion",
    }

    def __init__(
        self,
        callback_url: str,
        token: str,
        timeout: float = 10.0,
        retries: int = 3,
        client: httpx.Client | None = None,
    ) -> None:
        self.callback_url = callback_url.rstrip("/")
        self.retries = max(1, retries)
        self._client = client or httpx.Client(timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def send(self, report: Report) -> None:
        url = f"{self.callback_url}/{self.ENDPOINTS[report.type]}"
        # Artifacts are files of the trainer's machine; an HTTP trainer uploads what it wants kept.
        content = report.model_dump_json(exclude={"artifacts"})
        for attempt in range(1, self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._client.post(url, content=content, headers=self._headers)
            except httpx.TransportError:
                if last:
                    raise
            else:
                # 5xx and connection failures are worth another try; a 4xx never changes its mind.
                if response.status_code < 400:
                    return
                if response.status_code < 500 or last:
                    raise ReportRefused(response.status_code, _problem_detail(response))
            time.sleep(0.5 * 2 ** (attempt - 1))

    def close(self) -> None:
        self._client.close()


def _problem_detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]


class ConsoleTransport:
    """Neither a worker nor an API around (a trainer run by hand): reports go to stderr as JSON lines."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stderr

    def send(self, report: Report) -> None:
        print(report.model_dump_json(), file=self._stream, flush=True)


class TrainerSDK:
    def __init__(
        self,
        transport: Transport,
        context: TrainerContext | None = None,
        flush_every: float = FLUSH_EVERY_SECONDS,
    ) -> None:
        self.transport = transport
        self.context = context or TrainerContext()
        self.flush_every = flush_every
        self.dropped = 0
        self._last_progress: tuple[float, int, Phase] | None = None
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # guards the buffer
        self._flush_lock = threading.Lock()  # one flush at a time, so entries go out in order
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name="sdk-log-flusher", daemon=True)
        self._flusher.start()

    @classmethod
    def from_env(cls) -> "TrainerSDK":
        """The job of this process, from the environment the worker (or whoever started it) set."""
        context = TrainerContext.from_env()
        transport: Transport
        if context.report_fd is not None:
            transport = PipeTransport(context.report_fd)
        elif context.callback_url and context.token:
            transport = HttpTransport(context.callback_url, context.token)
        else:
            log.warning("neither TRAINYARD_REPORT_FD nor CALLBACK_URL is set; reports go to stderr")
            transport = ConsoleTransport()
        return cls(transport, context)

    @property
    def job_id(self) -> int:
        return self.context.job_id

    @property
    def config(self) -> dict[str, Any]:
        return self.context.config

    # Configuration -------------------------------------------------------------------------------
    def get_full_config(self) -> dict[str, Any]:
        return dict(self.config)

    def get_basic_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if k in BASIC_KEYS}

    def get_advanced_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if k not in BASIC_KEYS}

    # Reports -------------------------------------------------------------------------------------
    def report_started(self, **info: Any) -> None:
        self._send(StartedReport(**info))

    def report_progress(
        self,
        epoch: int,
        epochs: int,
        *,
        batch: int | None = None,
        batches: int | None = None,
        eta_s: float | None = None,
        phase: Phase | str = Phase.TRAIN,
    ) -> bool:
        """Where training is; False when skipped because the last report is under a second old
        (an epoch's end, `batch` None or the last batch, and a new phase are never skipped)."""
        report = ProgressReport(
            epoch=epoch, epochs=epochs, batch=batch, batches=batches, eta_s=eta_s, phase=Phase(phase)
        )
        now = time.monotonic()
        within_epoch = batch is not None and (batches is None or batch < batches)
        last = self._last_progress
        recent = (
            last is not None and (epoch, report.phase) == last[1:] and now - last[0] < PROGRESS_EVERY_SECONDS
        )
        if within_epoch and recent:
            return False
        self._last_progress = (now, epoch, report.phase)
        self._send(report)
        return True

    def report_metrics(self, epoch: int, train: dict[str, float], val: dict[str, float]) -> None:
        self._send(MetricsReport(epoch=epoch, train=train, val=val))

    def report_checkpoint(self, kind: str, path: str, epoch: int | None, metrics: dict[str, float]) -> None:
        """Under a worker, `path` is a file the trainer will not touch again (the worker moves it into
        storage); over HTTP, a URI or storage key it uploaded to (see app/training/callbacks.py)."""
        self._send(
            CheckpointReport.model_validate({"kind": kind, "path": path, "epoch": epoch, "metrics": metrics})
        )

    def report_completed(self, results: dict[str, Any], artifacts: dict[str, str] | None = None) -> None:
        self.flush()
        self._send(
            CompletedReport(results=TrainingResults.model_validate(results), artifacts=artifacts or {})
        )

    def report_stopped(self) -> None:
        """The trainer honoured a stop request; its last reported checkpoint is the one to resume."""
        self.flush()
        self._send(StoppedReport())

    def report_failed(self, error_code: str, message: str) -> None:
        self.flush()
        self._send(FailedReport(error_code=error_code, message=message))

    # Logs ----------------------------------------------------------------------------------------
    def log(self, level: str, message: str, **metadata: Any) -> None:
        """Buffer one entry; the background flusher sends it (at once when full or on ERROR)."""
        entry = {
            "level": level.upper(),
            "message": message,
            "timestamp": datetime.now(UTC).isoformat(),
            "source": "trainer",
            "metadata": metadata or None,
        }
        with self._lock:
            self._buffer.append(entry)
            urgent = len(self._buffer) >= FLUSH_AT_ENTRIES or entry["level"] == "ERROR"
        if urgent:
            self._wake.set()

    def log_debug(self, message: str, **metadata: Any) -> None:
        self.log("DEBUG", message, **metadata)

    def log_info(self, message: str, **metadata: Any) -> None:
        self.log("INFO", message, **metadata)

    def log_warning(self, message: str, **metadata: Any) -> None:
        self.log("WARNING", message, **metadata)

    def log_error(self, message: str, **metadata: Any) -> None:
        self.log("ERROR", message, **metadata)

    def flush(self) -> bool:
        """Send the buffered entries now; False (and the entries kept) when the transport failed."""
        with self._flush_lock:
            with self._lock:
                entries, self._buffer = self._buffer, []
            if not entries:
                return True
            try:
                self.transport.send(LogReport(logs=[LogEntry.model_validate(e) for e in entries]))
            except Exception:
                log.warning("could not flush %d log entries; training goes on", len(entries), exc_info=True)
                self._keep(entries)
                return False
            return True

    flush_logs = flush

    def close(self) -> None:
        """Stop the flusher and send what is left."""
        self._closed.set()
        self._wake.set()
        self._flusher.join(timeout=self.flush_every + 30)
        self.flush()

    def _keep(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            self._buffer[:0] = entries
            overflow = len(self._buffer) - MAX_BUFFERED
            if overflow > 0:
                del self._buffer[:overflow]
                self.dropped += overflow

    def _flush_periodically(self) -> None:
        every = self.flush_every
        while not self._closed.is_set():
            self._wake.wait(every)
            self._wake.clear()
            if self._closed.is_set():
                return  # close() sends the rest
            if not self.flush():
                # The transport is down: wait a full period rather than retry on every new entry.
                self._closed.wait(every)

    def _send(self, report: Report) -> None:
        self.transport.send(report)
