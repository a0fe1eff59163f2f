"""What the pages show, read with the services the REST routers use plus the few per-page queries
(latest progress, attempts) that no REST route needs."""

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.events import EventType
from app.core.jobs import TERMINAL, JobStatus
from app.models import JobEvent, TrainingJob
from app.training import schemas

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
        scored = [(e.val_metrics[key], e.epoch) for e in epochs if e.val_metrics.get(key) is not None]
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


def best_live(session: Session, job_ids: list[int]) -> dict[int, Best]:
    """The best epoch so far of jobs that have no final results yet, from their metrics events."""
    if not job_ids:
        return {}
    stmt = select(JobEvent).where(JobEvent.job_id.in_(job_ids), JobEvent.type == EventType.METRICS)
    by_job: dict[int, list[schemas.EpochMetrics]] = {}
    for event in session.scalars(stmt):
        by_job.setdefault(event.job_id, []).append(epoch_metrics(event.data))
    return {job_id: best for job_id, epochs in by_job.items() if (best := best_of(epochs))}


def epoch_metrics(data: dict[str, Any]) -> schemas.EpochMetrics:
    # Non-finite metrics arrive as null (CONTRACT): they are left out of charts and bests.
    def finite(values: dict[str, Any] | None) -> dict[str, float]:
        return {k: float(v) for k, v in (values or {}).items() if v is not None}

    return schemas.EpochMetrics(
        epoch=int(data["epoch"]), train_metrics=finite(data.get("train")), val_metrics=finite(data.get("val"))
    )


def job_rows(session: Session, jobs: list[TrainingJob]) -> list[JobRow]:
    """The jobs list's rows: each job with its latest progress and its best metric."""
    ids = [job.id for job in jobs]
    progress = latest_of_type(session, ids, EventType.PROGRESS)
    pending = [job.id for job in jobs if best_from_results(job) is None and job.current_epoch > 0]
    live_best = best_live(session, pending)
    return [
        JobRow(
            job=job,
            progress=Progress.of(progress[job.id].data) if job.id in progress else None,
            best=best_from_results(job) or live_best.get(job.id),
        )
        for job in jobs
    ]


@dataclass
class Attempt:
    number: int
    statuses: list[tuple[str, str]] = field(default_factory=list)  # (ts, status)
    errors: list[str] = field(default_factory=list)


def attempts(session: Session, job_id: int) -> list[Attempt]:
    """Each attempt of a job with the statuses it went through and its errors."""
    stmt = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.type.in_([EventType.STATUS, EventType.ERROR]))
        .order_by(JobEvent.seq)
    )
    by_number: dict[int, Attempt] = {}
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
