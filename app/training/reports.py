"""What a trainer reports, applied to its job: `apply_report`, the one path for the worker's own trainer
(its pipe) and for external trainers (the callback API). The reports themselves are defined once, in
trainyard_sdk/reports.py (docs/trainer-contract.md).

Every report is fenced by the attempt: one from an attempt that no longer owns the job raises
StaleAttempt (JobFinished once the job ended) and changes nothing. Outcomes (completed, failed,
stopped) change the job's status through app/training/state.py.
"""

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from app.core.events import EventType, record_event
from app.training import state
from trainyard_sdk.reports import (
    AnyReport,
    CheckpointReport,
    CompletedReport,
    FailedReport,
    LogReport,
    MetricsReport,
    Phase,
    ProgressReport,
    ReportType,
    StartedReport,
    StoppedReport,
)


def _started(session: Session, job_id: int, attempt: int, report: StartedReport) -> None:
    info = dict(report.model_extra or {})
    message = f"trainer started (pid {info.get('pid')})" if info.get("pid") else "trainer started"
    entry = {"level": "INFO", "source": "system", "message": message, "metadata": info}
    _logs(session, job_id, attempt, LogReport.model_validate({"logs": [entry]}))


def _progress(session: Session, job_id: int, attempt: int, report: ProgressReport) -> None:
    job = state.active_job(session, job_id, attempt)
    data = report.event_data()
    if report.batch is None and report.phase != Phase.SETUP:
        job.current_epoch = report.epoch  # an epoch's end: that many epochs are done
    job.total_epochs = report.epochs
    job.progress = data
    record_event(session, job, EventType.PROGRESS, data)


def _metrics(session: Session, job_id: int, attempt: int, report: MetricsReport) -> None:
    job = state.active_job(session, job_id, attempt)
    record_event(
        session, job, EventType.METRICS, report.model_dump(mode="json", include={"epoch", "train", "val"})
    )


def _checkpoint(session: Session, job_id: int, attempt: int, report: CheckpointReport) -> None:
    """`report.path` is where the checkpoint is kept now (a storage key or a URI), not the trainer's file."""
    job = state.active_job(session, job_id, attempt)
    kind = report.resolved_kind
    if kind == "best":
        job.best_checkpoint = report.path
    elif kind == "last":
        job.last_checkpoint = report.path
    data = {
        "kind": kind,
        "path": report.path,
        "epoch": report.epoch,
        "size_bytes": report.size_bytes,
        "metrics": report.model_dump(mode="json")["metrics"],
        "attempt": attempt,
    }
    record_event(session, job, EventType.CHECKPOINT, data)


def _logs(session: Session, job_id: int, attempt: int, report: LogReport) -> None:
    job = state.active_job(session, job_id, attempt)
    for entry in report.logs:
        data = entry.model_dump(mode="json", include={"level", "message", "source", "metadata"})
        record_event(session, job, EventType.LOG, data, ts=entry.timestamp)


def _completed(session: Session, job_id: int, attempt: int, report: CompletedReport) -> None:
    state.complete(session, job_id, attempt, report.results.model_dump(mode="json"))


def _failed(session: Session, job_id: int, attempt: int, report: FailedReport) -> None:
    state.fail(session, job_id, attempt, report.error_code, report.message)


def _stopped(session: Session, job_id: int, attempt: int, report: StoppedReport) -> None:
    state.stopped(session, job_id, attempt)


APPLY: dict[ReportType, Callable[[Session, int, int, Any], None]] = {
    ReportType.STARTED: _started,
    ReportType.PROGRESS: _progress,
    ReportType.METRICS: _metrics,
    ReportType.CHECKPOINT: _checkpoint,
    ReportType.LOG: _logs,
    ReportType.COMPLETED: _completed,
    ReportType.FAILED: _failed,
    ReportType.STOPPED: _stopped,
}


def apply_report(session: Session, job_id: int, attempt: int, report: AnyReport) -> None:
    """Apply one report of `attempt` to its job, in the caller's transaction."""
    APPLY[report.type](session, job_id, attempt, report)


def record_config(session: Session, job_id: int, attempt: int, config: dict[str, Any]) -> None:
    """The config the attempt really runs with, once its worker fitted it to its device (shown as the
    job's config and kept with its model), and a system log line saying what changed."""
    job = state.active_job(session, job_id, attempt)
    changes = {k: (job.config.get(k), v) for k, v in config.items() if job.config.get(k) != v}
    if not changes:
        return
    job.config = config
    said = ", ".join(
        f"{k} {json.dumps(old)} -> {json.dumps(new)}" for k, (old, new) in sorted(changes.items())
    )
    entry = {"level": "INFO", "source": "system", "message": f"config fitted to this worker: {said}"}
    _logs(session, job_id, attempt, LogReport.model_validate({"logs": [entry]}))


def ensure_active(session: Session, job_id: int, attempt: int) -> None:
    """Refuse (StaleAttempt, JobFinished) unless `attempt` owns the job and it is still running."""
    state.active_job(session, job_id, attempt)
