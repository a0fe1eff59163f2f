"""Registered DICE datasets and their frozen versions."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base
from app.models.base import UTCDateTime, utcnow
from app.models.project import Project


class Dataset(Base):
    """A DICE folder the platform owns, under `projects/<p>/datasets/<slug>/source/`."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "slug", name="uq_datasets_project_slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    # The summary of the last successful load (app.datasets.dice.summarize), so listing reads no files.
    task_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    total_images: Mapped[int] = mapped_column(Integer, default=0)
    total_annotations: Mapped[int] = mapped_column(Integer, default=0)
    splits: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined", innerjoin=True)

    @property
    def storage_prefix(self) -> str:
        return f"projects/{self.project.slug}/datasets/{self.slug}"

    @property
    def source_key(self) -> str:
        return f"{self.storage_prefix}/source"


class VersionStatus(StrEnum):
    CREATING = "creating"
    READY = "ready"
    TRAINING = "training"
    FAILED = "failed"
    ARCHIVED = "archived"


class DatasetVersion(Base):
    """A frozen snapshot of a dataset: its manifest (in storage) is the truth, this row indexes it."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "number", name="uq_dataset_versions_project_number"),
        UniqueConstraint("project_id", "idempotency_key", name="uq_dataset_versions_project_idem"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    display_name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=VersionStatus.CREATING)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # What was asked for, kept for the record and to reproduce the snapshot.
    split_ratios: Mapped[dict[str, float] | None] = mapped_column(JSON)
    split_seed: Mapped[int] = mapped_column(Integer, default=0)
    preprocessing: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    augmentation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What the snapshot holds.
    task_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    image_count: Mapped[int] = mapped_column(Integer, default=0)
    annotation_count: Mapped[int] = mapped_column(Integer, default=0)
    split_counts: Mapped[dict[str, dict[str, int]]] = mapped_column(
        JSON, default=dict
    )  # task -> split -> images
    class_counts: Mapped[dict[str, dict[str, int]]] = mapped_column(JSON, default=dict)
    leakage: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    manifest_key: Mapped[str | None] = mapped_column(Text)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    snapshot_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    project: Mapped[Project] = relationship(lazy="joined", innerjoin=True)
    dataset: Mapped[Dataset] = relationship(lazy="joined", innerjoin=True)

    @property
    def name(self) -> str:
        """What people call it: `v3`."""
        return f"v{self.number}"

    @property
    def storage_prefix(self) -> str:
        return f"{self.dataset.storage_prefix}/versions/{self.name}"
