from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base
from app.core.jobs import JobStatus
from app.models.base import UTCDateTime, utcnow
from app.models.project import Project


class TrainingJob(Base):
    __tablename__ = "training_jobs"
    __table_args__ = (
        UniqueConstraint("project_id", "slug", name="uq_training_jobs_project_slug"),
        # The scheduler's questions (app/scheduling/): the best queued job of each project, read first
        # (priority descending, then age), and the jobs each project started within the fair-share window.
        Index("ix_training_jobs_head", "status", "project_id", text("priority DESC"), "id"),
        Index("ix_training_jobs_started", "started_at", "project_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100))
    framework: Mapped[str] = mapped_column(String(40))
    task_type: Mapped[str] = mapped_column(String(40))
    model_name: Mapped[str] = mapped_column(String(100))
    dataset_path: Mapped[str | None] = mapped_column(Text)
    dataset_id: Mapped[int | None] = mapped_column(Integer)
    # A job trained from a frozen dataset version records it and the manifest checksum it used.
    dataset_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL"), index=True
    )
    dataset_manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    # Trained from a checkpoint (not from the model YAML): the weights it started from and their
    # origin. Plain ids, not foreign keys: lineage is history and outlives a deleted model or job.
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_model_id: Mapped[int | None] = mapped_column(Integer)
    parent_job_id: Mapped[int | None] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.QUEUED, index=True)
    # Scheduling (app/scheduling/): a level of app.scheduling.priorities, the worker pool it needs (None:
    # any), and whether the scheduler asked it to give its GPU back (preemption: it then goes back to the
    # queue, not to `stopped`).
    priority: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    pool: Mapped[str | None] = mapped_column(String(60))
    preempt_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    # The lease: the attempt fences every write a worker makes; the owner renews `lease_expires_at`.
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_event_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # sha256 of the current attempt's callback token (app/core/security.py); the token itself is never stored.
    callback_token_hash: Mapped[str | None] = mapped_column(String(64))
    # Where each attempt ran, one entry per claim: attempt, worker, host, started_at, ended_at, outcome
    # (app/training/state.py writes it with the status; None on jobs older than the column).
    attempts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=list)

    current_epoch: Mapped[int] = mapped_column(Integer, default=0)
    total_epochs: Mapped[int] = mapped_column(Integer, default=0)
    # The latest `progress` event's data (docs/architecture.md); None before the first one.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    best_checkpoint: Mapped[str | None] = mapped_column(Text)
    last_checkpoint: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined", innerjoin=True)

    @property
    def checkpoints(self) -> dict[str, str | None]:
        """The storage keys of its best and last weights, as the API shows them."""
        return {"best": self.best_checkpoint, "last": self.last_checkpoint}

    @property
    def host(self) -> str | None:
        """The host that runs (or last ran) the current attempt; None until a worker claims it."""
        current = [a for a in self.attempts or [] if a.get("attempt") == self.attempt]
        return current[-1].get("host") if current else None

    @property
    def running_pool(self) -> str | None:
        """The pool of the worker that runs (or last ran) the current attempt."""
        current = [a for a in self.attempts or [] if a.get("attempt") == self.attempt]
        return current[-1].get("pool") if current else None

    @property
    def storage_prefix(self) -> str:
        """Where this job's weights, logs and artifacts live in storage (docs/architecture.md)."""
        return f"projects/{self.project.slug}/model/training/{self.slug}"


class JobEvent(Base):
    """The durable event log of a job; SSE replays from it."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(20))
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TrainingLog(Base):
    """Log lines of a job, queryable by level and time (each is also a `log` event)."""

    __tablename__ = "training_logs"
    __table_args__ = (Index("ix_training_logs_job_ts", "job_id", "timestamp"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(20), default="trainer")
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)


class SchedulerState(Base):
    """One row. Every scheduling decision updates it first, which serializes decisions across workers and
    schedulers on any database (a row lock on PostgreSQL, the write lock on SQLite); it counts them too."""

    __tablename__ = "scheduler_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    decisions: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
