"""What a trainer reports, applied to its job: the one path for the worker's own trainer and for
external trainers calling the callback API. Every function is fenced by the attempt: a report from
an attempt that no longer owns the job raises StaleAttempt and changes nothing.
"""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import ErrorCode
from app.core.events import EventType, StaleAttempt, lock_job, record_event
from app.core.jobs import ACTIVE, TERMINAL, JobStatus, check_transition
from app.core.security import job_token, token_hash
from app.model_registry.service import register_job
from app.models import TrainingJob
from app.models.base import as_utc, utcnow
from app.versions.usage import release_for_job


class JobFinished(StaleAttempt):
    """The job already reached a terminal state; nothing may change it any more."""


def _active_job(session: Session, job_id: int, attempt: int) -> TrainingJob:
    job = lock_job(session, job_id, attempt)
    if job.status not in ACTIVE:
        raise JobFinished(job_id, attempt, job.attempt)
    return job


def ensure_active(session: Session, job_id: int, attempt: int) -> None:
    """Refuse (StaleAttempt, JobFinished) unless `attempt` owns the job and it is still running."""
    _active_job(session, job_id, attempt)


def set_status(session: Session, job: TrainingJob, status: JobStatus, **data: Any) -> None:
    """Change status and record the status event in the same transaction."""
    check_transition(JobStatus(job.status), status)
    job.status = status
    if status in TERMINAL:
        job.finished_at = utcnow()
        job.lease_owner = None
        job.lease_expires_at = None
        release_for_job(session, job)  # its dataset version is `ready` again once no job uses it
    record_event(session, job, EventType.STATUS, {"status": status, "attempt": job.attempt, **data})


def claim(session: Session, job_id: int, attempt: int, owner: str, ttl_seconds: float) -> TrainingJob | None:
    """Take a queued job for this attempt; None when the message is stale, a duplicate, or for a
    job that no longer exists."""
    job = session.get(TrainingJob, job_id)
    if job is None:
        return None
    job = lock_job(session, job_id)
    if job.attempt != attempt or job.status != JobStatus.QUEUED:
        return None
    job.lease_owner = owner
    job.lease_expires_at = utcnow() + timedelta(seconds=ttl_seconds)
    job.started_at = job.started_at or utcnow()
    # The attempt's callback token goes live with it; tokens of earlier attempts stop matching.
    job.callback_token_hash = token_hash(job_token(job.id, job.attempt))
    set_status(session, job, JobStatus.RUNNING, worker=owner)
    return job


def renew_lease(session: Session, job_id: int, attempt: int, owner: str, ttl_seconds: float) -> JobStatus:
    """Extend the lease; returns the status so the worker notices a stop request."""
    job = _active_job(session, job_id, attempt)
    if job.lease_owner != owner:
        raise StaleAttempt(job_id, attempt, job.attempt)
    job.lease_expires_at = utcnow() + timedelta(seconds=ttl_seconds)
    return JobStatus(job.status)


def started(session: Session, job_id: int, attempt: int, info: dict[str, Any]) -> None:
    """The trainer process is up: a system log line carrying what it told about itself."""
    _active_job(session, job_id, attempt)
    message = f"trainer started (pid {info.get('pid')})" if info.get("pid") else "trainer started"
    entry = {"level": "INFO", "source": "system", "message": message, "metadata": info}
    logs(session, job_id, attempt, [entry])


def progress(session: Session, job_id: int, attempt: int, epoch: int, total: int, eta: float | None) -> None:
    job = _active_job(session, job_id, attempt)
    job.current_epoch = epoch
    job.total_epochs = total
    record_event(session, job, EventType.PROGRESS, {"epoch": epoch, "total": total, "eta_seconds": eta})


def metrics(
    session: Session, job_id: int, attempt: int, epoch: int, train: dict[str, float], val: dict[str, float]
) -> None:
    job = _active_job(session, job_id, attempt)
    record_event(session, job, EventType.METRICS, {"epoch": epoch, "train": train, "val": val})


def checkpoint(
    session: Session,
    job_id: int,
    attempt: int,
    kind: str,
    path: str,
    epoch: int | None,
    size_bytes: int | None,
    metrics: dict[str, float],
) -> None:
    job = _active_job(session, job_id, attempt)
    if kind == "best":
        job.best_checkpoint = path
    elif kind == "last":
        job.last_checkpoint = path
    data = {
        "kind": kind,
        "path": path,
        "epoch": epoch,
        "size_bytes": size_bytes,
        "metrics": metrics,
        "attempt": attempt,
    }
    record_event(session, job, EventType.CHECKPOINT, data)


def logs(session: Session, job_id: int, attempt: int, entries: list[dict[str, Any]]) -> int:
    job = _active_job(session, job_id, attempt)
    for entry in entries:
        ts = entry.get("timestamp")
        moment = as_utc(datetime.fromisoformat(ts)) if isinstance(ts, str) else None
        record_event(
            session,
            job,
            EventType.LOG,
            {
                "level": str(entry.get("level", "INFO")).upper(),
                "message": str(entry.get("message", "")),
                "source": entry.get("source", "trainer"),
                "metadata": entry.get("metadata"),
            },
            ts=moment,
        )
    return len(entries)


def complete(session: Session, job_id: int, attempt: int, results: dict[str, Any]) -> None:
    job = _active_job(session, job_id, attempt)
    job.results = results
    set_status(session, job, JobStatus.COMPLETED, results=results)
    register_job(session, job)


def stopped(session: Session, job_id: int, attempt: int) -> None:
    """The trainer stopped on request; `last_checkpoint` (if any) is where a resume starts."""
    job = _active_job(session, job_id, attempt)
    set_status(
        session,
        job,
        JobStatus.STOPPED,
        stopped_at_epoch=job.current_epoch,
        resumable=job.last_checkpoint is not None,
    )
    register_job(session, job)  # a stopped job with a best checkpoint is a usable model too


def fail(session: Session, job_id: int, attempt: int, code: ErrorCode | str, message: str) -> None:
    """End the job failed: an `error` event with the code, then the terminal status event."""
    job = _active_job(session, job_id, attempt)
    job.error_code = str(code)
    job.error_message = message
    record_event(session, job, EventType.ERROR, {"code": str(code), "message": message})
    set_status(session, job, JobStatus.FAILED, error_code=str(code))
