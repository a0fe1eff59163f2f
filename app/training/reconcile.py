"""Reconciliation: repairs what the broker forgot or a crash left behind. Jobs whose worker vanished
get a new attempt, queued jobs whose message was lost get it again, dataset versions no job uses any
more become `ready` again, and urgent jobs that found no free GPU reclaim borrowed ones.

Runs periodically (Celery beat, workers/tasks/reconcile.py). The database lease is the only liveness
signal used; Celery's visibility timeout and redelivery are never relied upon. Status changes go
through app/training/state.py like every other.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.events import lock_job
from app.core.jobs import ACTIVE, TERMINAL, JobStatus
from app.models import DatasetVersion, TrainingJob, VersionStatus
from app.models.base import utcnow
from app.scheduling import service as scheduling
from app.scheduling.pools import serving
from app.scheduling.priorities import Priority
from app.training import state

log = logging.getLogger("operations.training")


def requeue_expired_leases(session: Session, max_attempts: int, now: datetime | None = None) -> list[int]:
    """Running jobs whose lease expired (their worker died or froze) get a new attempt."""
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
            state.requeue(session, job, f"lease of worker {job.lease_owner} expired", max_attempts)
            requeued.append(job.id)
    return requeued


def redispatch_stale_queued(
    session: Session, older_than: timedelta, workers: list[dict[str, Any]], now: datetime | None = None
) -> list[int]:
    """Queued jobs not taken for a long while (their message lost) wake their pool's workers again, and
    their wait for a message starts over. Not one message per job: a woken worker takes job after job,
    the best each time, whatever woke it (app/training/state.py `claim_next`), so a backlog of thousands
    would only flood the broker. Each training queue gets as many wake-ups as it has stale jobs, at most
    as many as the online workers that consume it (`workers`, the registry; at least one when it knows
    none): counting only the idle ones could leave one asleep, since a busy worker may take a wake-up too."""
    cutoff = (now or utcnow()) - older_than
    stale = (TrainingJob.status == JobStatus.QUEUED, TrainingJob.dispatched_at < cutoff)
    rows = session.execute(
        select(TrainingJob.id, TrainingJob.attempt, TrainingJob.pool).where(*stale).order_by(TrainingJob.id)
    ).all()
    by_pool: dict[str | None, list[tuple[int, int]]] = {}
    for job_id, attempt, pool in rows:
        by_pool.setdefault(pool, []).append((job_id, attempt))
    for pool, jobs in by_pool.items():
        for job_id, attempt in jobs[: max(1, len(serving(workers, pool)))]:
            state.wake_after_commit(session, job_id, attempt, pool)
    session.execute(update(TrainingJob).where(*stale).values(dispatched_at=utcnow()))
    return [row.id for row in rows]


def reclaim_borrowed(session: Session, preempt_for: Priority | None, grace: timedelta) -> list[int]:
    """Urgent work that waited past `grace` (no GPU came free) takes back borrowed GPUs: each such job
    preempts the lowest-priority job running past its project's quota (app/scheduling/service.py)."""
    if preempt_for is None:
        return []
    scheduling.serialize(session)  # a second scheduler, running by mistake, waits and sees these
    preempted = []
    for victim, urgent in scheduling.victims(session, preempt_for, grace):
        job = lock_job(session, victim.id)
        if job.status == JobStatus.RUNNING and not job.preempt_requested:
            log.info("job %s (priority %s) gives its borrowed GPU to job %s", job.id, job.priority, urgent.id)
            state.preempt(session, job, urgent)
            preempted.append(job.id)
    return preempted


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
