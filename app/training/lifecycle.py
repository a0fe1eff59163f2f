"""What a user can do to a job once it exists: stop, cancel, resume. Each is one fenced transition
recorded with its event in the same transaction; a worker notices stop requests on its heartbeat."""

from sqlalchemy.orm import Session

from app.core.errors import AppError, ErrorCode
from app.core.events import lock_job
from app.core.jobs import JobStatus
from app.models import TrainingJob
from app.training.recovery import dispatch
from app.training.reports import set_status
from app.versions.usage import claim_for_job


def _refuse(job: TrainingJob, action: str) -> AppError:
    return AppError(409, ErrorCode.INVALID_TRANSITION, f"a {job.status} job cannot be {action}")


def stop(session: Session, job_id: int) -> TrainingJob:
    """Running: ask its worker to stop after the current step (keeps `last.pt`). Queued: cancel it."""
    job = lock_job(session, job_id)
    if job.status == JobStatus.QUEUED:
        set_status(session, job, JobStatus.CANCELLED, reason="stopped before it started")
    elif job.status == JobStatus.RUNNING:
        set_status(session, job, JobStatus.STOPPING, requested_by="user")
    elif job.status != JobStatus.STOPPING:  # asking twice is fine
        raise _refuse(job, "stopped")
    return job


def cancel(session: Session, job_id: int) -> TrainingJob:
    """A queued job never starts: the worker that gets its message finds it cancelled."""
    job = lock_job(session, job_id)
    if job.status != JobStatus.QUEUED:
        raise _refuse(job, "cancelled (stop a running job instead)")
    set_status(session, job, JobStatus.CANCELLED, reason="cancelled by user")
    return job


def resume(session: Session, job_id: int) -> TrainingJob:
    """A stopped or failed job continues as a new attempt of the same job, from its `last.pt`."""
    job = lock_job(session, job_id)
    if job.status not in {JobStatus.STOPPED, JobStatus.FAILED}:
        raise _refuse(job, "resumed")
    if job.dataset_version_id is not None:
        claim_for_job(session, job.dataset_version_id, job.project, job.task_type)
    job.attempt += 1
    job.error_code = None
    job.error_message = None
    job.finished_at = None
    set_status(session, job, JobStatus.QUEUED, resumed=True, from_checkpoint=job.last_checkpoint)
    dispatch(session, job)
    return job
