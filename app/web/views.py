"""What the pages show, read with the services the REST routers use plus the few per-page queries
(latest progress, attempts) that no REST route needs."""

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.orm import Session

from app.core.events import EventType
from app.core.jobs import TERMINAL, JobStatus
from app.models import JobEvent, TrainingJob, TrainingLog
from app.scheduling import service as scheduling
from app.scheduling.service import Pending
from app.training import schemas
from app.training.service import live_workers_or_none

# Which validation metric a job is judged by, in order of preference (detection, classification).
BEST_KEYS = ("mAP50-95", "accuracy_top1", "mAP50", "accuracy")


@dataclass(frozen=True)
class Progress:
    """A `progress` event's data, read in both shapes: the batch-level contract (`epochs`, `batch`,
    `batches`, `eta_s`, `phase`) and the epoch-level one it replaces (`total`, `eta_seconds`)."""

    epoch: int
    epochs: int
    batch: int | None = None
    batches: int | None = None
    eta_s: float | None = None
    phase: str | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Progress":
        eta = data.get("eta_s", data.get("eta_seconds"))
        return cls(
            epoch=int(data.get("epoch") or 0),
            epochs=int(data.get("epochs", data.get("total")) or 0),
            batch=data.get("batch"),
            batches=data.get("batches"),
            eta_s=float(eta) if eta is not None else None,
            phase=data.get("phase"),
        )

    @property
    def fraction(self) -> float:
        """Done share of the whole run: finished epochs plus the share of the epoch in progress."""
        if self.epochs <= 0:
            return 0.0
        if self.batch is not None and self.batches:
            done = max(self.epoch - 1, 0) + min(self.batch / self.batches, 1.0)
        else:
            done = self.epoch
        return min(done / self.epochs, 1.0)


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} m"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Best:
    name: str
    value: float
    epoch: int | None


def best_of(epochs: list[schemas.EpochMetrics]) -> Best | None:
    """The best epoch by the job's main validation metric (higher is better)."""
    for key in BEST_KEYS:
        scored = [(value, e.epoch) for e in epochs if (value := e.val_metrics.get(key)) is not None]
        if scored:
            value, epoch = max(scored)
            return Best(key, value, epoch)
    return None


def best_from_results(job: TrainingJob) -> Best | None:
    results = job.results or {}
    metrics = results.get("best_metrics") or {}
    for key in BEST_KEYS:
        if metrics.get(key) is not None:
            return Best(key, float(metrics[key]), results.get("best_epoch"))
    return None


@dataclass
class JobRow:
    job: TrainingJob
    progress: Progress | None
    best: Best | None
    waiting: Pending | None = None  # a queued job's place in line, why it waits, its estimated start

    @property
    def live(self) -> bool:
        return self.job.status not in TERMINAL


def latest_of_type(session: Session, job_ids: list[int], type: EventType) -> dict[int, JobEvent]:
    """The latest event of `type` of each job (one query, whatever the number of events)."""
    if not job_ids:
        return {}
    latest = (
        select(JobEvent.job_id, func.max(JobEvent.seq).label("seq"))
        .where(JobEvent.job_id.in_(job_ids), JobEvent.type == type)
        .group_by(JobEvent.job_id)
        .subquery()
    )
    stmt = select(JobEvent).join(
        latest, (JobEvent.job_id == latest.c.job_id) & (JobEvent.seq == latest.c.seq)
    )
    return {event.job_id: event for event in session.scalars(stmt)}


def epoch_metrics(data: dict[str, Any]) -> schemas.EpochMetrics:
    # Non-finite metrics arrive as null (CONTRACT): they are left out of charts and bests.
    def finite(values: dict[str, Any] | None) -> dict[str, float]:
        return {k: float(v) for k, v in (values or {}).items() if v is not None}

    return schemas.EpochMetrics(
        epoch=int(data["epoch"]), train_metrics=finite(data.get("train")), val_metrics=finite(data.get("val"))
    )


@dataclass
class Summary:
    """A job's latest progress and best metric so far, folded over its events up to `seq`."""

    created: datetime | None = None  # which job: an id may name another job after a delete
    seq: int = 0
    progress: Progress | None = None
    bests: dict[str, tuple[float, int]] = field(default_factory=dict)  # metric -> (value, epoch)

    def fold(self, type: str, data: dict[str, Any]) -> None:
        if type == EventType.PROGRESS:
            self.progress = Progress.of(data)
            return
        epoch = int(data.get("epoch") or 0)
        for key, value in (data.get("val") or {}).items():
            if key in BEST_KEYS and value is not None and (value, epoch) > self.bests.get(key, (-1.0, 0)):
                self.bests[key] = (float(value), epoch)

    @property
    def best(self) -> Best | None:
        key = next((k for k in BEST_KEYS if k in self.bests), None)
        return Best(key, *self.bests[key]) if key else None


class Summaries:
    """Per-job summaries for the jobs list, kept between requests: the event log only grows, so each
    page reads only the events that arrived since the last (not a job's whole history, on every
    render). Bounded; a process that starts cold reads each shown job's events once."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self.cache: OrderedDict[int, Summary] = OrderedDict()
        self.lock = threading.Lock()

    def of(self, session: Session, jobs: list[TrainingJob]) -> dict[int, Summary]:
        with self.lock:
            found = {job.id: self.cache.get(job.id) for job in jobs}
        stale: dict[int, Summary] = {}
        for job in jobs:
            summary = found[job.id]
            if summary is None or summary.created != job.created_at:  # new, or an id used again
                stale[job.id] = Summary(created=job.created_at)
            elif summary.seq < job.last_event_seq:
                stale[job.id] = Summary(summary.created, summary.seq, summary.progress, dict(summary.bests))
        if stale:
            limits = {job.id: job.last_event_seq for job in jobs if job.id in stale}
            since = or_(
                *(
                    and_(JobEvent.job_id == job_id, JobEvent.seq > stale[job_id].seq, JobEvent.seq <= limit)
                    for job_id, limit in limits.items()
                )
            )
            stmt = (
                select(JobEvent.job_id, JobEvent.type, JobEvent.data)
                .where(since, JobEvent.type.in_([EventType.PROGRESS, EventType.METRICS]))
                .order_by(JobEvent.job_id, JobEvent.seq)
            )
            for job_id, type, data in session.execute(stmt):
                stale[job_id].fold(type, data)
            for job_id, summary in stale.items():
                summary.seq = limits[job_id]
        with self.lock:
            for job_id, summary in stale.items():
                self.cache[job_id] = summary
                self.cache.move_to_end(job_id)
            while len(self.cache) > self.size:
                self.cache.popitem(last=False)
        return {job.id: stale.get(job.id) or found[job.id] or Summary() for job in jobs}


SUMMARIES = Summaries()


def job_rows(session: Session, jobs: list[TrainingJob]) -> list[JobRow]:
    """The jobs list's rows: each job with its latest progress and its best metric; a queued one with
    why it waits."""
    summaries = SUMMARIES.of(session, jobs)
    pending = waiting(session, [job.id for job in jobs if job.status == JobStatus.QUEUED])
    return [
        JobRow(
            job,
            summaries[job.id].progress,
            best_from_results(job) or summaries[job.id].best,
            pending.get(job.id),
        )
        for job in jobs
    ]


def waiting(session: Session, queued: list[int]) -> dict[int, Pending]:
    """Why each of these queued jobs waits (app/scheduling/service.py `explain`, as the REST record)."""
    return scheduling.explain(session, queued, live_workers_or_none()) if queued else {}


def log_tail(session: Session, job_id: int, limit: int) -> list[Row[str, datetime, str]]:
    """The job's newest `limit` log lines (level, timestamp, message), oldest first: one query from the
    end of its index, with no count and no offset through the lines before them."""
    stmt = (
        select(TrainingLog.level, TrainingLog.timestamp, TrainingLog.message)
        .where(TrainingLog.job_id == job_id)
        .order_by(TrainingLog.timestamp.desc(), TrainingLog.id.desc())
        .limit(limit)
    )
    return list(reversed(session.execute(stmt).all()))


@dataclass
class Attempt:
    number: int
    statuses: list[tuple[str, str]] = field(default_factory=list)  # (ts, status)
    errors: list[str] = field(default_factory=list)
    worker: str | None = None  # where it ran (the job's `attempts` record), once claimed
    host: str | None = None


def attempts(session: Session, job: TrainingJob) -> list[Attempt]:
    """Each attempt of a job with the statuses it went through, its errors and where it ran."""
    stmt = (
        select(JobEvent)
        .where(JobEvent.job_id == job.id, JobEvent.type.in_([EventType.STATUS, EventType.ERROR]))
        .order_by(JobEvent.seq)
    )
    by_number: dict[int, Attempt] = {
        int(placed["attempt"]): Attempt(
            int(placed["attempt"]), worker=placed.get("worker"), host=placed.get("host")
        )
        for placed in job.attempts or []
    }
    number = 1
    for event in session.scalars(stmt):
        number = int(event.data.get("attempt") or number)
        attempt = by_number.setdefault(number, Attempt(number))
        if event.type == EventType.STATUS:
            attempt.statuses.append((event.ts.strftime("%Y-%m-%d %H:%M:%S"), str(event.data.get("status"))))
        else:
            code, message = event.data.get("code") or event.data.get("error_code"), event.data.get("message")
            attempt.errors.append(f"{code}: {message}" if code else str(message or event.data))
    return [by_number[n] for n in sorted(by_number)]


ACTIONS: dict[str, frozenset[JobStatus]] = {
    "stop": frozenset({JobStatus.RUNNING}),
    "cancel": frozenset({JobStatus.QUEUED}),
    "resume": frozenset({JobStatus.STOPPED, JobStatus.FAILED}),
}


def actions_for(status: str) -> list[str]:
    """The buttons a job in `status` offers."""
    return [action for action, states in ACTIONS.items() if status in states]
