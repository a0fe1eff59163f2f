"""Queued jobs by name and simulated workers that claim and finish them through app/training/state.py,
as a worker's runner does, without any process."""

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.db import Database
from app.core.naming import slugify
from app.models import JobEvent, Project, TrainingJob
from app.models.base import utcnow
from app.scheduling.priorities import Priority
from app.training import state
from tests.factories import make_job

LEASE_SECONDS = 60


def submit(
    db: Database, project: str, names: list[str], priority: int = Priority.NORMAL, **fields: Any
) -> list[int]:
    """Queue a job per name in `project`, oldest first; their ids."""
    with db.session() as s:
        return [make_job(s, name, project, priority=priority, **fields).id for name in names]


def named(
    db: Database, project: str, names: list[str], priority: int = Priority.NORMAL, **fields: Any
) -> dict[str, int]:
    """`submit`, as {name: id}."""
    return dict(zip(names, submit(db, project, names, priority, **fields), strict=True))


def configure_project(db: Database, name: str, quota: int | None = None, weight: float = 1.0) -> None:
    """Set a project's GPU quota and share weight (creating it when missing), as an admin's PATCH does."""
    with db.session() as s:
        project = s.scalar(select(Project).where(Project.name == name))
        if project is None:
            project = Project(name=name, slug=slugify(name))
            s.add(project)
        project.gpu_quota, project.share_weight = quota, weight


def claim(db: Database, worker: str, pool: str | None = None) -> tuple[int, int] | None:
    """What `worker` (of `pool`) takes when it is free: (job id, attempt), or None."""
    with db.session() as s:
        job = state.claim_next(s, worker, LEASE_SECONDS, host=f"host-{worker}", pool=pool)
        return None if job is None else (job.id, job.attempt)


def complete(db: Database, running: tuple[int, int]) -> None:
    with db.session() as s:
        state.complete(s, running[0], running[1], {"epochs_completed": 2})


def names(db: Database, job_ids: list[int]) -> list[str]:
    with db.session() as s:
        by_id = dict(s.execute(select(TrainingJob.id, TrainingJob.name)).tuples().all())
    return [by_id[job_id] for job_id in job_ids]


def hold_until(db: Database, job_id: int, seconds: float) -> None:
    """Move a queued job's `dispatched_at` by `seconds` from now (positive: a retry's backoff)."""
    with db.session() as s:
        s.get_one(TrainingJob, job_id).dispatched_at = utcnow() + timedelta(seconds=seconds)


def attempts(db: Database, job_id: int) -> list[dict[str, Any]]:
    with db.session() as s:
        return list(s.get_one(TrainingJob, job_id).attempts or [])


def status_events(session: Session, job_id: int) -> list[dict[str, Any]]:
    stmt = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "status").order_by(JobEvent.seq)
    return [dict(e.data) for e in session.scalars(stmt)]
