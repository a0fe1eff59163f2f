"""Repairs what the broker forgot: jobs whose worker vanished, queued jobs whose message was lost.

Runs periodically (Celery beat). The database lease is the only liveness signal used; Celery's
visibility timeout and redelivery are never relied upon.
"""

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import on_commit
from app.core.errors import ErrorCode
from app.core.events import EventType, lock_job, record_event
from app.core.jobs import ACTIVE, TERMINAL, JobStatus
from app.core.tasks import Queue, TaskName, send_task
from app.models import DatasetVersion, TrainingJob, VersionStatus
from app.models.base import utcnow
from app.training.reports import fail, set_status

log = logging.getLogger("operations.training")


# Failures worth another attempt: the same job may well succeed on the next try (or another worker).
TRANSIENT = frozenset(
    {ErrorCode.TRANSIENT_ERROR, ErrorCode.TRAINER_CRASHED, ErrorCode.CHECKPOINT_UPLOAD_FAILED}
)


def dispatch(session: Session, job: TrainingJob, delay: float | None = None) -> None:
    """Send the job's command once the transaction commits (dropped on rollback)."""
    job.dispatched_at = utcnow()
    job_id, attempt = job.id, job.attempt
    on_commit(session, lambda: send_task(TaskName.TRAIN, [job_id, attempt], Queue.TRAINING, countdown=delay))


def requeue(
    session: Session, job: TrainingJob, reason: str, max_attempts: int | None, delay: float | None = None
) -> None:
    """Give an orphaned job a new attempt, or fail it when it has used them all (None: no limit)."""
    if max_attempts is not None and job.attempt >= max_attempts:
        job.error_code = ErrorCode.WORKER_LOST
        job.error_message = f"{reason}; gave up after {job.attempt} attempts"
        record_event(session, job, EventType.ERROR, {"code": job.error_code, "message": job.error_message})
        set_status(session, job, JobStatus.FAILED, error_code=job.error_code)
        return
    previous = job.lease_owner
    job.attempt += 1
    job.lease_owner = None
    job.lease_expires_at = None
    set_status(session, job, JobStatus.QUEUED, reason=reason, requeued=True, previous_worker=previous)
    dispatch(session, job, delay)


def requeue_expired_leases(session: Session, max_attempts: int, now: datetime | None = None) -> list[int]:
    now = now or utcnow()
    stmt = select(TrainingJob.id).where(
        TrainingJob.status.in_(list(ACTIVE)), TrainingJob.lease_expires_at < now
    )
    requeued = []
    for job_id in session.scalars(stmt).all():
        job = lock_job(session, job_id)
        # Re-check under the lock: the worker may have renewed since the select.
        if job.status in ACTIVE and job.lease_expires_at is not None and job.lease_expires_at < now:
            log.warning("job %s attempt %s: lease of %s expired", job.id, job.attempt, job.lease_owner)
            requeue(session, job, f"lease of worker {job.lease_owner} expired", max_attempts)
            requeued.append(job.id)
    return requeued


def redispatch_stale_queued(
    session: Session, older_than: timedelta, now: datetime | None = None
) -> list[int]:
    """Queued jobs not taken for a long while get their command again; a duplicate claims nothing."""
    cutoff = (now or utcnow()) - older_than
    stmt = select(TrainingJob).where(
        TrainingJob.status == JobStatus.QUEUED, TrainingJob.dispatched_at < cutoff
    )
    jobs = list(session.scalars(stmt).unique())
    for job in jobs:
        dispatch(session, job)
    return [job.id for job in jobs]


def hand_back(session: Session, job_id: int, attempt: int, reason: str) -> None:
    """A worker shutting down returns its running job to the queue, resumable, without a penalty."""
    job = lock_job(session, job_id, attempt)
    if job.status in ACTIVE:
        requeue(session, job, reason, max_attempts=None)


def fail_or_retry(
    session: Session,
    job_id: int,
    attempt: int,
    code: str,
    message: str,
    max_attempts: int,
    backoff_seconds: float,
) -> None:
    """A transient failure gets a new attempt after a backoff (up to `max_attempts`); others fail now."""
    job = lock_job(session, job_id, attempt)
    if code not in TRANSIENT or job.attempt >= max_attempts or job.status not in ACTIVE:
        fail(session, job_id, attempt, code, message)
        return
    record_event(session, job, EventType.ERROR, {"code": code, "message": message, "retrying": True})
    delay = backoff_seconds * 2 ** (job.attempt - 1)
    requeue(session, job, f"{code}: {message}", max_attempts, delay=delay)


def release_idle_versions(session: Session) -> list[int]:
    """Dataset versions left `training` with no unfinished job on them (a crash between the job's end
    and the version's release) become `ready` again."""
    busy = select(TrainingJob.id).where(
        TrainingJob.dataset_version_id == DatasetVersion.id, TrainingJob.status.not_in(list(TERMINAL))
    )
    stmt = select(DatasetVersion).where(DatasetVersion.status == VersionStatus.TRAINING, ~busy.exists())
    versions = list(session.scalars(stmt.with_for_update(of=DatasetVersion)).unique())
    for version in versions:
        version.status = VersionStatus.READY
    return [version.id for version in versions]
