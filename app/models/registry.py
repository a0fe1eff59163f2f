"""The model registry: one row per training job that produced weights, and each project's deployments."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base
from app.models.base import UTCDateTime, utcnow
from app.models.project import Project


class ModelStatus(StrEnum):
    PENDING = "pending"  # registered; a worker has not yet loaded and run it
    READY = "ready"  # its weights loaded and predicted on a worker
    FAILED = "failed"  # its weights did not load or predict (see status_reason)


class RegisteredModel(Base):
    """Weights a job produced, with everything needed to trust and reproduce them (lineage)."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("job_id", name="uq_models_job_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    # Upsert key: re-registering the same job updates its row, never adds one.
    job_id: Mapped[int | None] = mapped_column(ForeignKey("training_jobs.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    framework: Mapped[str] = mapped_column(String(40))
    task_type: Mapped[str] = mapped_column(String(40), index=True)
    format: Mapped[str] = mapped_column(String(20), default="pt")
    architecture: Mapped[str] = mapped_column(String(100))
    weights_key: Mapped[str] = mapped_column(Text)  # the job's best.pt in storage
    exported_key: Mapped[str | None] = mapped_column(Text)  # its stable copy, after export-best
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Bumped whenever the weights change (re-registration, export), so caches never serve stale ones.
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    imgsz: Mapped[int | None] = mapped_column(Integer)
    class_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    # Lineage
    dataset_path: Mapped[str | None] = mapped_column(Text)
    dataset_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL")
    )
    dataset_manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    parent_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    # The base weights the lineage starts from (app/models/weights.py), by content.
    base_weights_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    package_versions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    job_status: Mapped[str] = mapped_column(String(20))  # completed, or stopped with a best checkpoint

    status: Mapped[str] = mapped_column(String(20), default=ModelStatus.PENDING, index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    validated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined", innerjoin=True)

    @property
    def lineage(self) -> "RegisteredModel":
        """Lineage (dataset, job, parent model, base weights, config) is held in this row's own columns."""
        return self

    @property
    def stable_key(self) -> str:
        """Where export-best puts the weights: outside the job folder, keyed by model id."""
        return f"projects/{self.project.slug}/model/registry/{self.id}/best.pt"


class DeploymentAction(StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    REVERT = "revert"


class Deployment(Base):
    """One change of a project's active model for a task. The newest row per (project, task) is the
    state; `parent_id` is the row whose state it replaced, so rollback walks back the chain."""

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_project_task", "project_id", "task_type", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    task_type: Mapped[str] = mapped_column(String(40))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    previous_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
