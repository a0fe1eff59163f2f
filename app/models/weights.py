"""Base weights (lineage roots any project may start from) and the exports of registered models."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.models.base import UTCDateTime, utcnow

BASE_PREFIX = "weights/base/"


class ArtifactStatus(StrEnum):
    PENDING = "pending"  # stored; a worker has not yet loaded (or built) and checked it
    READY = "ready"  # a worker loaded it and it predicted as expected
    FAILED = "failed"  # see status_reason


class BaseWeights(Base):
    """An imported `.pt` (e.g. yolo11n.pt): a registry entry like a trained model, with no project and no
    parent. Stored once per content (`weights/base/<sha256>.pt`), so importing the same bytes again
    finds this row."""

    __tablename__ = "base_weights"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    framework: Mapped[str] = mapped_column(String(40), default="ultralytics")
    task_type: Mapped[str] = mapped_column(String(40), index=True)
    architecture: Mapped[str] = mapped_column(String(100))
    class_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Where the file came from (its file name as uploaded) and which Ultralytics wrote it.
    source: Mapped[str] = mapped_column(Text)
    ultralytics_version: Mapped[str | None] = mapped_column(String(40))
    weights_key: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=ArtifactStatus.PENDING)
    status_reason: Mapped[str | None] = mapped_column(Text)
    validated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @staticmethod
    def key_of(sha256: str) -> str:
        return f"{BASE_PREFIX}{sha256}.pt"

    @staticmethod
    def sha256_of(key: str | None) -> str | None:
        """The content a base weights key names (keys are content addresses); None for other keys."""
        if key is None or not key.startswith(BASE_PREFIX) or not key.endswith(".pt"):
            return None
        return key.removeprefix(BASE_PREFIX).removesuffix(".pt")


class ExportFormat(StrEnum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"


class ModelExport(Base):
    """A registered model in another format, built and cross-checked against the `.pt` by a worker."""

    __tablename__ = "model_exports"
    __table_args__ = (UniqueConstraint("model_id", "format", name="uq_model_exports_model_format"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=ArtifactStatus.PENDING)
    status_reason: Mapped[str | None] = mapped_column(Text)
    key: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    # opset, onnx/onnxruntime/torch/ultralytics versions, and the box cross-check's numbers
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
