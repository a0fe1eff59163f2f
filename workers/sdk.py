"""TrainerSDK: how any trainer process reports to Trainyard.

The worker starts a trainer as a child process with the job in its environment; the trainer calls
`TrainerSDK.from_env()` and reports through it. The transport is the worker's own pipe (the
`TRAINYARD_REPORT_FD` descriptor); the worker applies each report to the job, fenced by its attempt.
Log entries are buffered: flushed at 50 entries, every 5 seconds, and at once on ERROR. A failed
flush never stops training.
"""

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("operations.training")

FLUSH_AT_ENTRIES = 50
FLUSH_EVERY_SECONDS = 5.0
BASIC_KEYS = frozenset({"epochs", "imgsz", "batch", "lr0", "optimizer", "patience", "device", "workers", "seed"})


class Transport(Protocol):
    def send(self, report: dict[str, Any]) -> None: ...


class PipeTransport:
    """JSON lines on a file descriptor that the worker reads."""

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def send(self, report: dict[str, Any]) -> None:
        line = json.dumps(report, default=float)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


class TrainerSDK:
    def __init__(self, transport: Transport, job_id: int, config: dict[str, Any],
                 flush_every: float = FLUSH_EVERY_SECONDS) -> None:
        self.transport = transport
        self.job_id = job_id
        self.config = config
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, args=(flush_every,), daemon=True)
        self._flusher.start()

    @classmethod
    def from_env(cls) -> "TrainerSDK":
        env = os.environ
        if "CONFIG_PATH" in env:
            config = json.loads(Path(env["CONFIG_PATH"]).read_text())
        else:
            config = json.loads(env.get("CONFIG", "{}"))
        transport = PipeTransport(int(env["TRAINYARD_REPORT_FD"]))
        return cls(transport, int(env["JOB_ID"]), config)

    # Configuration -------------------------------------------------------------------------------
    def get_full_config(self) -> dict[str, Any]:
        return dict(self.config)

    def get_basic_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if k in BASIC_KEYS}

    def get_advanced_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if k not in BASIC_KEYS}

    # Reports -------------------------------------------------------------------------------------
    def report_started(self, **info: Any) -> None:
        self._send({"type": "started", **info})

    def report_progress(self, epoch: int, total_epochs: int, eta_seconds: float | None = None) -> None:
        self._send({"type": "progress", "epoch": epoch, "total_epochs": total_epochs, "eta_seconds": eta_seconds})

    def report_metrics(self, epoch: int, train: dict[str, float], val: dict[str, float]) -> None:
        self._send({"type": "metrics", "epoch": epoch, "train": train, "val": val})

    def report_checkpoint(self, kind: str, path: str, epoch: int | None, metrics: dict[str, float]) -> None:
        """`path` is a file the trainer will not touch again (the worker moves it into storage)."""
        self._send({"type": "checkpoint", "kind": kind, "path": path, "epoch": epoch, "metrics": metrics})

    def report_completed(self, results: dict[str, Any], artifacts: dict[str, str] | None = None) -> None:
        self.flush()
        self._send({"type": "completed", "results": results, "artifacts": artifacts or {}})

    def report_failed(self, error_code: str, message: str) -> None:
        self.flush()
        self._send({"type": "failed", "error_code": error_code, "message": message})

    # Logs ----------------------------------------------------------------------------------------
    def log(self, level: str, message: str, **metadata: Any) -> None:
        entry = {"level": level.upper(), "message": message, "timestamp": datetime.now(UTC).isoformat(),
                 "source": "trainer", "metadata": metadata or None}
        with self._lock:
            self._buffer.append(entry)
            full = len(self._buffer) >= FLUSH_AT_ENTRIES
        if full or entry["level"] == "ERROR":
            self.flush()

    def log_debug(self, message: str, **metadata: Any) -> None:
        self.log("DEBUG", message, **metadata)

    def log_info(self, message: str, **metadata: Any) -> None:
        self.log("INFO", message, **metadata)

    def log_warning(self, message: str, **metadata: Any) -> None:
        self.log("WARNING", message, **metadata)

    def log_error(self, message: str, **metadata: Any) -> None:
        self.log("ERROR", message, **metadata)

    def flush(self) -> None:
        with self._lock:
            entries, self._buffer = self._buffer, []
        if not entries:
            return
        try:
            self.transport.send({"type": "log", "logs": entries})
        except Exception:
            log.warning("could not flush %d log entries; training goes on", len(entries), exc_info=True)

    def close(self) -> None:
        self._closed.set()
        self.flush()

    def _flush_periodically(self, every: float) -> None:
        while not self._closed.wait(every):
            self.flush()

    def _send(self, report: dict[str, Any]) -> None:
        self.transport.send(report)
