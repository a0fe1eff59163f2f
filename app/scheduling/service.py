"""Scheduling against the database, the only truth: which queued job a free worker takes (at claim time),
why a queued job waits and about when it starts, and which borrowed GPU an urgent job reclaims.

Celery messages only wake workers: a woken worker takes the best job it may run, whichever message woke
it (app/training/state.py `claim_next`). Decisions are serialized by a one-row table (SchedulerState), so
two workers, or a worker and a scheduler running twice by mistake, never decide on the same state.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, case, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from app.core.jobs import ACTIVE, JobStatus
from app.models import Project, SchedulerState, TrainingJob
from app.models.base import utcnow
from app.scheduling.policy import Group, Load, Waiting, choose, order, place
from app.scheduling.pools import serving
from app.scheduling.priorities import Priority

# How many recent attempts estimate a job's duration (for "starts in about ...").
DURATION_SAMPLE = 20
# Fair share's memory: jobs started this long ago still count against their project's share.
FAIR_SHARE_WINDOW = timedelta(hours=1)


class SchedulerStateMissing(RuntimeError):
    """The mutex row is gone (a database not migrated, or emptied by hand): deciding without it could
    give one job to two workers, so nothing is decided."""


def serialize(session: Session) -> None:
    """Take the scheduling mutex for the rest of the transaction (and count the decision)."""
    taken = cast(
        CursorResult[Any],
        session.execute(
            update(SchedulerState)
            .where(SchedulerState.id == 1)
            .values(decisions=SchedulerState.decisions + 1)
        ),
    )
    if taken.rowcount != 1:  # an UPDATE of no row locks nothing
        raise SchedulerStateMissing("scheduler_state row 1, made by migration 0010, is missing")


def loads(session: Session) -> dict[int, Load]:
    """Every project's running jobs, quota, weight and jobs started within the fair-share window."""
    # Counted here rather than with GROUP BY project_id: a grouped count lets a planner prefer walking the
    # project_id index over the whole table (SQLite does) to the few rows ix_training_jobs_head and
    # ix_training_jobs_started hold for these conditions.
    running = Counter(
        session.scalars(select(TrainingJob.project_id).where(TrainingJob.status.in_(list(ACTIVE))))
    )
    recent = Counter(
        session.scalars(
            select(TrainingJob.project_id).where(TrainingJob.started_at >= utcnow() - FAIR_SHARE_WINDOW)
        )
    )
    rows = session.execute(select(Project.id, Project.gpu_quota, Project.share_weight)).all()
    return {
        pid: Load(running.get(pid, 0), quota, weight or 1.0, recent.get(pid, 0))
        for pid, quota, weight in rows
    }


def _eligible(job: type[TrainingJob], pool: str | None) -> Any:
    """Jobs a worker of `pool` may run: those that need no pool, and those that need its own."""
    return or_(job.pool.is_(None), job.pool == pool) if pool else job.pool.is_(None)


def _not_held(job: type[TrainingJob]) -> Any:
    """Not held back: a retry waits out its backoff (`dispatched_at` is then in the future)."""
    return or_(job.dispatched_at.is_(None), job.dispatched_at <= utcnow())


# The inner query's jobs, named apart from the outer's; made once: an alias adapts its columns on first use.
_CANDIDATE = aliased(TrainingJob, name="candidate")


def heads(session: Session, pool: str | None) -> list[Waiting]:
    """Each project's best queued job that a worker of `pool` may run: one probe of ix_training_jobs_head
    per project (its first entry that qualifies), never a sort of the whole queue."""
    candidate = _CANDIDATE
    head = (
        select(candidate.id)
        .where(
            candidate.project_id == Project.id,
            candidate.status == JobStatus.QUEUED,
            _not_held(candidate),
            _eligible(candidate, pool),
        )
        .order_by(candidate.priority.desc(), candidate.id)
        .limit(1)
        .correlate(Project)
        .scalar_subquery()
    )
    rows = session.execute(
        select(TrainingJob.id, TrainingJob.project_id, TrainingJob.priority, TrainingJob.pool).where(
            TrainingJob.id.in_(select(head).select_from(Project))
        )
    ).all()
    return [Waiting(row.id, row.project_id, row.priority, row.pool) for row in rows]


def pick(session: Session, pool: str | None) -> tuple[int, bool] | None:
    """Under the mutex: the id of the job a free worker of `pool` takes now, and whether it borrows."""
    serialize(session)
    chosen = choose(heads(session, pool), loads(session))
    return None if chosen is None else (chosen[0].id, chosen[1])


# Why a job waits ------------------------------------------------------------------------------
class WaitKind(StrEnum):
    """The class of a waiting reason, for machines (/metrics labels, the REST `waiting.kind`)."""

    BACKOFF = "backoff"  # a retry waits out its delay
    POOL_UNSERVED = "pool_unserved"  # no live worker consumes its pool (or the training queue)
    STARTING = "starting"  # next in line and a GPU is free
    QUOTA = "quota"  # its project is at its GPU quota: it only borrows an idle GPU
    PRIORITY = "priority"  # jobs of a higher priority go first
    FAIR_SHARE = "fair_share"  # every GPU busy; other projects' turns come first


@dataclass(frozen=True)
class Pending:
    position: int  # 1: the next job to start
    kind: WaitKind
    reason: str
    estimated_start_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "kind": self.kind.value,
            "reason": self.reason,
            "estimated_start_seconds": self.estimated_start_seconds,
        }


# Explaining more jobs than this at once (/metrics, a long page of the jobs list) builds the whole line
# instead of counting each job's place in it: a default page (50) is still cheaper counted.
COUNTED_UP_TO = 60


def _queued(session: Session, among: set[int] | None = None) -> tuple[list[Waiting], dict[int, datetime]]:
    """The queued jobs (those `among` these ids, if given), and when those held back (a retry's backoff)
    may start. Plain rows of the table, and timestamps decoded only for the few held back: the whole
    queue may be read."""
    jobs = TrainingJob.__table__.c
    queued = [jobs.status == JobStatus.QUEUED, *([jobs.id.in_(among)] if among is not None else [])]
    rows = session.execute(select(jobs.id, jobs.project_id, jobs.priority, jobs.pool).where(*queued)).all()
    held = session.execute(
        select(TrainingJob.id, TrainingJob.dispatched_at).where(*queued, TrainingJob.dispatched_at > utcnow())
    ).all()
    return [Waiting(*row) for row in rows], {job_id: until for job_id, until in held if until is not None}


def _counted(
    session: Session, jobs: list[Waiting], current: dict[int, Load]
) -> dict[int, tuple[int, int, bool]]:
    """Each job's (place, jobs of a higher priority ahead, borrows) from one count of the queue by project
    and priority (policy.place), not from the whole line."""
    c = TrainingJob.__table__.c
    older = [func.sum(case((c.id < job.id, 1), else_=0)) for job in jobs]
    rows = session.execute(
        select(c.project_id, c.priority, func.count(), *older)
        .where(c.status == JobStatus.QUEUED)
        .group_by(c.project_id, c.priority)
    ).all()
    found = {}
    for n, job in enumerate(jobs):
        groups = [Group(row[0], row[1], row[2], int(row[3 + n])) for row in rows]
        # On PostgreSQL the job may have started since it was read (each statement sees its own snapshot).
        if any((g.project_id, g.priority) == (job.project_id, job.priority) for g in groups):
            found[job.id] = place(job, groups, current)
    return found


def _lined_up(
    queued: list[Waiting], wanted: set[int], current: dict[int, Load]
) -> dict[int, tuple[int, int, bool]]:
    """`_counted`, read off the whole line (policy.order): cheaper than counting for many jobs."""
    found = {}
    ahead_by_priority: Counter[int] = Counter()  # the jobs ahead so far: one pass, however long the line
    for position, (job, borrows) in enumerate(order(queued, current), start=1):
        if job.id in wanted:
            higher = sum(n for level, n in ahead_by_priority.items() if level > job.priority)
            found[job.id] = (position, higher, borrows)
        ahead_by_priority[job.priority] += 1
    return found


def mean_duration(session: Session) -> float | None:
    """Seconds a recent job took from start to end, on average (None before any finished)."""
    rows = session.execute(
        select(TrainingJob.started_at, TrainingJob.finished_at)
        .where(TrainingJob.finished_at.is_not(None), TrainingJob.started_at.is_not(None))
        .order_by(TrainingJob.finished_at.desc())
        .limit(DURATION_SAMPLE)
    ).all()
    spans = [(end - start).total_seconds() for start, end in rows if start and end and end >= start]
    return sum(spans) / len(spans) if spans else None


def explain(session: Session, job_ids: Iterable[int], workers: list[dict[str, Any]]) -> dict[int, Pending]:
    """For the queued jobs among `job_ids`: their place in line, why they wait and an estimated start.
    `workers`: the live workers of the registry (app/core/workers.py), with `pool` and `current_job`."""
    wanted = set(job_ids)
    counting = len(wanted) <= COUNTED_UP_TO
    queued, held = _queued(session, wanted if counting else None)
    jobs = [job for job in queued if job.id in wanted]
    if not jobs:
        return {}
    current = loads(session)
    places = _counted(session, jobs, current) if counting else _lined_up(queued, wanted, current)
    names = dict(session.execute(select(Project.id, Project.name)).all())
    duration = mean_duration(session)
    by_pool = {pool: serving(workers, pool) for pool in {job.pool for job in jobs}}
    found: dict[int, Pending] = {}
    for job in jobs:
        if job.id not in places:  # no longer queued
            continue
        position, higher, borrows = places[job.id]
        pool_workers = by_pool[job.pool]
        kind, reason = _why(job, position, borrows, higher, pool_workers, held, current, names)
        estimate = None
        if duration is not None and pool_workers:
            estimate = round((position - 1) // len(pool_workers) * duration + duration / 2, 1)
            if job.id in held:  # a retry does not start before its backoff ends, whatever its place
                estimate = max(estimate, round((held[job.id] - utcnow()).total_seconds(), 1))
        found[job.id] = Pending(position, kind, reason, estimate)
    return found


def _why(
    job: Waiting,
    place: int,
    borrows: bool,
    higher: int,
    pool_workers: list[dict[str, Any]],
    held: dict[int, datetime],
    current: dict[int, Load],
    names: dict[int, str],
) -> tuple[WaitKind, str]:
    """The class and the words of why `job`, at `place` in line, waits."""
    if job.id in held:
        return (
            WaitKind.BACKOFF,
            f"retrying after a failure: not before {held[job.id].isoformat(timespec='seconds')}",
        )
    if not pool_workers:
        where = f"pool {job.pool!r}" if job.pool else "the training queue"
        return WaitKind.POOL_UNSERVED, f"no live worker consumes {where}"
    if any(w.get("current_job") is None for w in pool_workers) and place == 1:
        return WaitKind.STARTING, "starting: a GPU is free"
    if (load := current.get(job.project_id, Load())).at_quota and borrows:
        project = names.get(job.project_id, job.project_id)
        return WaitKind.QUOTA, (
            f"quota reached: project {project} runs {load.running} of its {load.quota} GPUs; "
            "it borrows one when no other project waits"
        )
    if higher > 0:
        return WaitKind.PRIORITY, f"behind {higher} job(s) of higher priority"
    gpus = f"a GPU in pool {job.pool!r}" if job.pool else "a GPU"
    return WaitKind.FAIR_SHARE, (
        f"waiting for {gpus}: {len(pool_workers)} busy, {place - 1} job(s) ahead by fair share"
    )


# Reclaiming borrowed GPUs ------------------------------------------------------------------------
def fits(running: TrainingJob, waiting: TrainingJob) -> bool:
    """Whether the GPU `running` holds is one `waiting` may use (the pool its worker is in)."""
    return waiting.pool is None or running.running_pool == waiting.pool


def borrowed_jobs(session: Session) -> list[TrainingJob]:
    """Running jobs past their project's quota: per project, its lowest-priority, newest ones beyond it."""
    jobs = list(
        session.scalars(
            select(TrainingJob).where(
                TrainingJob.status == JobStatus.RUNNING, TrainingJob.preempt_requested.is_(False)
            )
        ).unique()
    )
    found: list[TrainingJob] = []
    for project_id in {job.project_id for job in jobs}:
        project = session.get_one(Project, project_id)
        if project.gpu_quota is None:
            continue
        mine = sorted((j for j in jobs if j.project_id == project_id), key=lambda j: (j.priority, -j.id))
        found += mine[: max(0, len(mine) - project.gpu_quota)]
    return found


def victims(
    session: Session, preempting: Priority | None, grace: timedelta
) -> list[tuple[TrainingJob, TrainingJob]]:
    """(borrowed job to stop, urgent job it makes room for): for each job of a preempting priority that
    waited past `grace`, the lowest-priority borrowed job below its priority, in a pool it may use. Jobs
    already giving their GPU back count as room made."""
    if preempting is None:
        return []
    waiting = list(
        session.scalars(
            select(TrainingJob)
            .where(
                TrainingJob.status == JobStatus.QUEUED,
                TrainingJob.priority >= preempting,
                TrainingJob.dispatched_at < utcnow() - grace,
            )
            .order_by(TrainingJob.priority.desc(), TrainingJob.id)
        ).unique()
    )
    giving_back = session.scalar(
        select(func.count()).where(
            TrainingJob.preempt_requested.is_(True), TrainingJob.status.in_(list(ACTIVE))
        )
    )
    candidates = sorted(borrowed_jobs(session), key=lambda j: (j.priority, -j.id))
    pairs = []
    for urgent in waiting[giving_back or 0 :]:
        fit = next((j for j in candidates if j.priority < urgent.priority and fits(j, urgent)), None)
        if fit is not None:
            candidates.remove(fit)
            pairs.append((fit, urgent))
    return pairs
