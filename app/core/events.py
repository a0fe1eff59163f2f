"""The one place that records a job event: next seq -> stored -> published after commit.

Producers (the worker's own trainer, external trainers through the callback API, the API itself)
all call `record_event` on a row they locked with `lock_job`, so seq is strictly increasing per job
with no gaps even when several processes write. Pub/sub only notifies; SSE clients replay from the
database, so a lost publish loses nothing.
"""

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.db import on_commit
from app.core.redis import get_redis, job_channel
from app.core.visibility import get_visible
from app.models import JobEvent, TrainingJob, TrainingLog
from app.models.base import utcnow
from trainyard_sdk.reports import finite_or_none

log = logging.getLogger("app.backend")


class EventType(StrEnum):
    STATUS = "status"
    PROGRESS = "progress"
    METRICS = "metrics"
    LOG = "log"
    CHECKPOINT = "checkpoint"
    ERROR = "error"


class StaleAttempt(Exception):
    """A write from an attempt that no longer owns the job: refused, and the writer must stop."""

    def __init__(self, job_id: int, attempt: int, current: int) -> None:
        super().__init__(f"job {job_id}: attempt {attempt} is stale (current attempt {current})")
        self.job_id = job_id
        self.attempt = attempt
        self.current = current


def lock_job(
    session: Session, job_id: int, attempt: int | None = None, principal: Principal | None = None
) -> TrainingJob:
    """Load the job row for update (for a user's `principal`, a job it may not see is missing like one that
    does not exist); with `attempt`, refuse if another attempt owns the job now."""
    job = get_visible(session, principal, TrainingJob, job_id, for_update=True)
    if attempt is not None and job.attempt != attempt:
        raise StaleAttempt(job_id, attempt, job.attempt)
    return job


class EventRow(Protocol):
    """A stored event as read (a JobEvent, or a row of `events_after`)."""

    job_id: int
    seq: int
    type: str
    ts: datetime
    data: dict[str, Any]


def envelope(event: EventRow) -> dict[str, Any]:
    return {
        "job_id": event.job_id,
        "seq": event.seq,
        "type": event.type,
        "ts": event.ts.isoformat(),
        "data": event.data,
    }


def record_event(
    session: Session, job: TrainingJob, type: EventType, data: dict[str, Any], ts: datetime | None = None
) -> JobEvent:
    """Append an event to a job locked by `lock_job`; it is published once the session commits."""
    data = finite_json(data)
    job.last_event_seq += 1
    event = JobEvent(job_id=job.id, seq=job.last_event_seq, type=type, ts=ts or utcnow(), data=data)
    session.add(event)
    if type == EventType.LOG:
        session.add(
            TrainingLog(
                job_id=job.id,
                level=str(data.get("level", "INFO")).upper(),
                message=str(data.get("message", "")),
                timestamp=event.ts,
                source=str(data.get("source", "trainer")),
                meta=data.get("metadata"),
            )
        )
    session.flush()
    message = json.dumps(envelope(event))
    on_commit(session, lambda: publish(job.id, message))
    return event


def finite_json(value: Any) -> Any:
    """`value` with every NaN and Infinity replaced by None: every event must be valid JSON."""
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    return finite_or_none(value)


def publish(job_id: int, message: str) -> None:
    try:
        get_redis().publish(job_channel(job_id), message)
    except Exception:
        # Subscribers fall back to polling the database, so a Redis hiccup delays, never loses.
        log.warning("could not publish an event of job %s", job_id, exc_info=True)


# Built once: an SSE feed reads after every event, and building a statement took longer than running it.
_LAST_SEQ = select(TrainingJob.last_event_seq).where(TrainingJob.id == bindparam("job_id"))
_EVENTS_AFTER = (
    select(JobEvent.job_id, JobEvent.seq, JobEvent.type, JobEvent.ts, JobEvent.data)
    .where(JobEvent.job_id == bindparam("job_id"), JobEvent.seq > bindparam("after"))
    .order_by(JobEvent.seq)
    .limit(bindparam("limit"))
)


def last_seq(db: Session | Connection, job_id: int) -> int:
    """The seq of the job's last committed event (0 for none, or no such job)."""
    return db.scalar(_LAST_SEQ, {"job_id": job_id}) or 0


def events_after(db: Session | Connection, job_id: int, after: int, limit: int = 1000) -> Sequence[EventRow]:
    """The job's events after seq `after`, in order (rows with the fields of `envelope`)."""
    rows = db.execute(_EVENTS_AFTER, {"job_id": job_id, "after": after, "limit": limit})
    return rows.all()
