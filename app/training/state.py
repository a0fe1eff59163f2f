"""The job lifecycle: the only writer of a job's status (docs/architecture.md, "Job states").

`transition(session, job, target, ...)` checks the transition table, applies the effects that belong
to the target state and records the status event, all in the caller's transaction on a row locked with
`lock_job`; side effects that leave the process (the queue message, the model's validation) wait for
the commit. What users, workers and the reconciler do to a job are the few-line actions below it.

Every action of a worker or a trainer is fenced by the attempt: an attempt that no longer owns the job
raises StaleAttempt (JobFinished once the job ended) and changes nothing.
"""

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.db import on_commit
from app.core.errors import AppError, ErrorCode
from app.core.events import EventType, StaleAttempt, lock_job, record_event
from app.core.jobs import ACTIVE, TERMINAL, JobStatus
from app.core.security import job_token, token_hash
from app.core.tasks import TaskName, send_task, training_queue
from app.model_registry.service import register_job
from app.models import TrainingJob
from app.models.base import utcnow
from app.scheduling import service as scheduling
from app.training.results import complete_results
from app.versions.usage import claim_for_job, release_for_job

Q, R, S = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.STOPPING
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # Created queued; a user resumes a stopped or failed job as a new attempt of the same job.
    JobStatus.STOPPED: frozenset({Q}),
    JobStatus.FAILED: frozenset({Q}),
    Q: frozenset({R, JobStatus.CANCELLED, JobStatus.FAILED}),
    # -> queued: the worker was lost, handed the job back, or a transient failure is retried.
    R: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, S, JobStatus.STOPPED, Q}),
    S: frozenset({JobStatus.STOPPED, JobStatus.COMPLETED, JobStatus.FAILED, Q}),
}
# Failures worth another attempt: the same job may well succeed on the next try (or another worker).
TRANSIENT = frozenset(
    {ErrorCode.TRANSIENT_ERROR, ErrorCode.TRAINER_CRASHED, ErrorCode.CHECKPOINT_UPLOAD_FAILED}
)


class InvalidTransition(Exception):
    """Code asked for a move the table forbids: a bug, never a user's mistake (those are refusals)."""

    def __init__(self, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"a {current} job cannot become {target}")
        self.current = current
        self.target = target


class JobFinished(StaleAttempt):
    """The job already reached a terminal state; nothing may change it any more."""


# The status a user's action leads to, so that asking twice is refused as "... again".
REACHED_BY = {JobStatus.STOPPED: "stopped", JobStatus.CANCELLED: "cancelled"}


def refusal(job: TrainingJob, action: str, hint: str = "") -> AppError:
    """A user's action the job's status does not allow: 409 naming the status and the action."""
    again = " again" if REACHED_BY.get(JobStatus(job.status)) == action else ""
    detail = f"training job {job.id} is {job.status}: a {job.status} job cannot be {action}{again}"
    return AppError(409, ErrorCode.INVALID_TRANSITION, detail + (f" ({hint})" if hint else ""))


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def transition(
    session: Session,
    job: TrainingJob,
    target: JobStatus,
    *,
    owner: str | None = None,
    host: str | None = None,
    pool: str | None = None,
    borrowed: bool = False,
    ttl_seconds: float = 0.0,
    delay: float | None = None,
    error: tuple[str, str] | None = None,
    results: dict[str, Any] | None = None,
    **data: Any,
) -> None:
    """Move `job` (locked) to `target`, applying that state's effects; `data` joins the status event."""
    current = JobStatus(job.status)
    if not can_transition(current, target):
        raise InvalidTransition(current, target)
    if current in ACTIVE and target not in ACTIVE:
        _end_attempt(job, target)  # before a requeue moves on to the next attempt
    if target == Q:
        _enter_queued(session, job, current)
    elif target == R:
        _enter_running(job, owner, host, pool, borrowed, ttl_seconds)
        data.update(worker=owner, host=host)
        data.update({"pool": pool} if pool else {}, **({"borrowed": True} if borrowed else {}))
    if error is not None:
        job.error_code, job.error_message = error
        record_event(session, job, EventType.ERROR, {"code": error[0], "message": error[1]})
        data["error_code"] = error[0]
    if results is not None:
        job.results = complete_results(session, job, results)
        data["results"] = job.results
    job.status = target
    if target in TERMINAL:
        job.finished_at = utcnow()
        job.lease_owner = None
        job.lease_expires_at = None
        release_for_job(session, job)  # its dataset version is `ready` again once no job uses it
    record_event(session, job, EventType.STATUS, {"status": target, "attempt": job.attempt, **data})
    if target in {JobStatus.COMPLETED, JobStatus.STOPPED}:
        register_job(session, job)  # a stopped job with a best checkpoint is a usable model too
    if target == Q:
        dispatch(session, job, delay)


def _enter_queued(session: Session, job: TrainingJob, current: JobStatus) -> None:
    if current in TERMINAL and job.dataset_version_id is not None:
        # Released when the attempt ended; taken again (or refused) before anything changes.
        claim_for_job(session, job.dataset_version_id, job.project, job.task_type)
    job.attempt += 1
    job.preempt_requested = False
    job.lease_owner = None
    job.lease_expires_at = None
    job.error_code = None
    job.error_message = None
    job.finished_at = None


def _enter_running(
    job: TrainingJob,
    owner: str | None,
    host: str | None,
    pool: str | None,
    borrowed: bool,
    ttl_seconds: float,
) -> None:
    now = utcnow()
    job.lease_owner = owner
    job.lease_expires_at = now + timedelta(seconds=ttl_seconds)
    job.started_at = job.started_at or now
    # The attempt's callback token goes live with it; tokens of earlier attempts stop matching.
    job.callback_token_hash = token_hash(job_token(job.id, job.attempt))
    placed = {
        "attempt": job.attempt,
        "worker": owner,
        "host": host,
        "pool": pool,
        "borrowed": borrowed,  # its project was at its GPU quota: the first GPU reclaimed
        "started_at": now.isoformat(),
    }
    # A new list, not an append: SQLAlchemy sees a JSON column change only when it is assigned.
    job.attempts = [*(job.attempts or []), {**placed, "ended_at": None, "outcome": None}]


def _end_attempt(job: TrainingJob, target: JobStatus) -> None:
    """Close the running attempt's entry: when it ended and how (`requeued` when the job goes on)."""
    outcome = "requeued" if target == Q else str(target)
    ended = {"ended_at": utcnow().isoformat(), "outcome": outcome}
    job.attempts = [
        {**entry, **ended} if entry.get("attempt") == job.attempt else entry for entry in job.attempts or []
    ]


def dispatch(session: Session, job: TrainingJob, delay: float | None = None) -> None:
    """Send the job's command once the transaction commits (dropped on rollback). A delayed job (a
    retry's backoff) is not the scheduler's to start before `dispatched_at`."""
    job.dispatched_at = utcnow() + timedelta(seconds=delay or 0)
    send_after_commit(session, job, delay)


def send_after_commit(session: Session, job: TrainingJob, delay: float | None = None) -> None:
    """The message wakes a worker that may run the job (of its pool); the worker takes whichever queued job
    is best then (`claim_next`), so one message per queued job keeps enough workers awake."""
    wake_after_commit(session, job.id, job.attempt, job.pool, delay)


def wake_after_commit(
    session: Session, job_id: int, attempt: int, pool: str | None, delay: float | None = None
) -> None:
    """Once the transaction commits, wake a worker of `pool` with a message naming this job (a hint)."""
    queue = training_queue(pool)
    on_commit(session, lambda: send_task(TaskName.TRAIN, [job_id, attempt], queue, countdown=delay))


# Users ------------------------------------------------------------------------------------------
def queue_new(session: Session, job: TrainingJob) -> None:
    """A job just created (flushed, so it has an id) starts queued, with its first attempt's token."""
    job.status = Q
    job.callback_token_hash = token_hash(job_token(job.id, job.attempt))
    job.dispatched_at = utcnow()  # before the event's flush, which then writes the job in one UPDATE
    record_event(session, job, EventType.STATUS, {"status": Q, "attempt": job.attempt})
    send_after_commit(session, job)


def stop_job(session: Session, job_id: int, principal: Principal | None = None) -> TrainingJob:
    """Running: ask its worker to stop after the current step (keeps `last.pt`). Queued: cancel it."""
    job = lock_job(session, job_id, principal=principal)
    if job.status == Q:
        transition(session, job, JobStatus.CANCELLED, reason="stopped before it started")
    elif job.status == R:
        transition(session, job, S, requested_by="user")
    elif job.status == S:  # asking twice while it stops is fine
        job.preempt_requested = False  # stopping for the scheduler: the user's stop wins, it is not requeued
    else:
        raise refusal(job, "stopped")
    return job


def cancel_job(session: Session, job_id: int, principal: Principal | None = None) -> TrainingJob:
    """A queued job never starts: the worker that gets its message finds it cancelled."""
    job = lock_job(session, job_id, principal=principal)
    if job.status != Q:
        raise refusal(job, "cancelled", "stop a running job instead" if job.status == R else "")
    transition(session, job, JobStatus.CANCELLED, reason="cancelled by user")
    return job


def resume_job(session: Session, job_id: int, principal: Principal | None = None) -> TrainingJob:
    """A stopped or failed job continues as a new attempt of the same job, from its `last.pt`."""
    job = lock_job(session, job_id, principal=principal)
    if job.status not in {JobStatus.STOPPED, JobStatus.FAILED}:
        raise refusal(job, "resumed", "only a stopped or failed job can")
    transition(session, job, Q, resumed=True, from_checkpoint=job.last_checkpoint)
    return job


# Workers ----------------------------------------------------------------------------------------
def active_job(session: Session, job_id: int, attempt: int) -> TrainingJob:
    """The job locked for `attempt`, refused (StaleAttempt, JobFinished) unless that attempt runs it."""
    job = lock_job(session, job_id, attempt)
    if job.status not in ACTIVE:
        raise JobFinished(job_id, attempt, job.attempt)
    return job


def claim(
    session: Session, job_id: int, attempt: int, owner: str, ttl_seconds: float, host: str | None = None
) -> TrainingJob | None:
    """Take this queued job for this attempt, whatever the scheduler would pick (an external trainer
    that runs a job it was given, and tests); None when the attempt is stale or the job gone."""
    if session.get(TrainingJob, job_id) is None:
        return None
    job = lock_job(session, job_id)
    if job.attempt != attempt or job.status != Q:
        return None
    transition(session, job, R, owner=owner, host=host, ttl_seconds=ttl_seconds)
    return job


def claim_next(
    session: Session, owner: str, ttl_seconds: float, host: str | None = None, pool: str | None = None
) -> TrainingJob | None:
    """Take the queued job the scheduler gives a free worker of `pool` now (app/scheduling/), recording
    which worker on which host runs it; None when no queued job may run there."""
    while (picked := scheduling.pick(session, pool)) is not None:
        job_id, borrowed = picked
        job = lock_job(session, job_id)
        # Decisions are serialized, users are not: on PostgreSQL a cancel may commit between the pick's
        # read and this lock. The next pick no longer sees that job.
        if job.status == Q:
            transition(
                session, job, R, owner=owner, host=host, pool=pool, borrowed=borrowed, ttl_seconds=ttl_seconds
            )
            return job
    return None


def preempt(session: Session, job: TrainingJob, for_job: TrainingJob) -> None:
    """Ask a running job (locked) to give its GPU back to `for_job`: it stops after the current step,
    keeping its checkpoint, and goes back to the queue as preempted (`stopped` below), not failed."""
    job.preempt_requested = True
    # Its wait starts over: room is being made, so no second job is stopped for it within the grace.
    for_job.dispatched_at = utcnow()
    transition(session, job, S, requested_by="scheduler", preempted_for=for_job.id)


def renew_lease(session: Session, job_id: int, attempt: int, owner: str, ttl_seconds: float) -> JobStatus:
    """Extend the lease; returns the status so the worker notices a stop request."""
    job = active_job(session, job_id, attempt)
    if job.lease_owner != owner:
        raise StaleAttempt(job_id, attempt, job.attempt)
    job.lease_expires_at = utcnow() + timedelta(seconds=ttl_seconds)
    return JobStatus(job.status)


def complete(session: Session, job_id: int, attempt: int, results: dict[str, Any]) -> None:
    """The trainer finished: its results, completed from what the job recorded (app/training/results.py)."""
    transition(session, active_job(session, job_id, attempt), JobStatus.COMPLETED, results=results)


def stopped(session: Session, job_id: int, attempt: int) -> None:
    """The trainer stopped on request; `last_checkpoint` (if any) is where a resume starts. A job the
    scheduler preempted goes back to the queue and resumes from there."""
    job = active_job(session, job_id, attempt)
    if job.preempt_requested:
        transition(session, job, Q, preempted=True, reason="preempted", from_checkpoint=job.last_checkpoint)
        return
    transition(
        session,
        job,
        JobStatus.STOPPED,
        stopped_at_epoch=job.current_epoch,
        resumable=job.last_checkpoint is not None,
    )


def fail(session: Session, job_id: int, attempt: int, code: ErrorCode | str, message: str) -> None:
    """End the job failed: an `error` event with the code, then the terminal status event."""
    transition(session, active_job(session, job_id, attempt), JobStatus.FAILED, error=(str(code), message))


def requeue(
    session: Session, job: TrainingJob, reason: str, max_attempts: int | None, delay: float | None = None
) -> None:
    """Give an orphaned job (locked) a new attempt, or fail it when it used them all (None: no limit)."""
    if max_attempts is not None and job.attempt >= max_attempts:
        error = (ErrorCode.WORKER_LOST, f"{reason}; gave up after {job.attempt} attempts")
        transition(session, job, JobStatus.FAILED, error=error)
        return
    previous = job.lease_owner
    transition(session, job, Q, delay=delay, reason=reason, requeued=True, previous_worker=previous)


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
