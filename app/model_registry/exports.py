"""Exports of registered models (ONNX, TorchScript): requested here, built and checked by a worker
(`trainyard.export_model` on the inference queue), stored beside the model's weights.

One row per model and format; asking again re-exports when the model's weights changed since (its
`revision`) or the last attempt failed, and otherwise answers with the export there is.
"""

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.db import on_commit
from app.core.errors import not_found
from app.core.tasks import Queue, TaskName, send_task
from app.model_registry.service import get_model, weights_key
from app.models import ArtifactStatus, ModelExport, RegisteredModel
from app.models.base import utcnow

log = logging.getLogger("app.backend")

SUFFIX = {"onnx": "onnx", "torchscript": "torchscript"}
DEFAULT_IMGSZ = 640


def request_export(
    session: Session, model_id: int, fmt: str, principal: Principal | None = None
) -> tuple[ModelExport, bool]:
    """The model's export in `fmt`, (re)queued unless a current one exists; (row, whether queued)."""
    model = get_model(session, model_id, principal=principal)
    row = session.scalar(
        select(ModelExport).where(ModelExport.model_id == model.id, ModelExport.format == fmt)
    )
    current = row is not None and row.details.get("revision") == model.revision
    if row is not None and current and row.status != ArtifactStatus.FAILED:
        return row, False
    if row is None:
        row = ModelExport(model_id=model.id, format=fmt)
        session.add(row)
    row.status = ArtifactStatus.PENDING
    row.status_reason = None
    row.key = row.size_bytes = row.sha256 = None
    row.details = {"revision": model.revision}
    row.updated_at = utcnow()
    session.flush()
    export_id = row.id
    on_commit(session, lambda: _queue(export_id))
    return row, True


def _queue(export_id: int) -> None:
    try:
        send_task(TaskName.EXPORT_MODEL, [export_id], Queue.INFERENCE)
    except Exception:
        log.warning("could not queue model export %s", export_id, exc_info=True)


def list_exports(session: Session, model_id: int, principal: Principal | None = None) -> list[ModelExport]:
    model = get_model(session, model_id, principal=principal)
    stmt = select(ModelExport).where(ModelExport.model_id == model.id).order_by(ModelExport.id)
    return list(session.scalars(stmt))


def get_export(
    session: Session, model_id: int, export_id: int, principal: Principal | None = None
) -> ModelExport:
    model = get_model(session, model_id, principal=principal)
    row = session.get(ModelExport, export_id)
    if row is None or row.model_id != model.id:
        raise not_found("export", export_id)
    return row


@dataclass(frozen=True)
class ExportJob:
    """What a worker needs to build an export."""

    format: str
    task: str
    imgsz: int
    revision: int
    weights_key: str
    target_key: str


def load(session: Session, export_id: int) -> ExportJob | None:
    row = session.get(ModelExport, export_id)
    model = session.get(RegisteredModel, row.model_id) if row is not None else None
    if row is None or model is None:
        return None
    target = model.stable_key.rsplit("/", 1)[0] + f"/model.{SUFFIX[row.format]}"
    return ExportJob(
        row.format,
        model.task_type,
        model.imgsz or DEFAULT_IMGSZ,
        int(row.details.get("revision", model.revision)),
        weights_key(model),
        target,
    )


def _current(session: Session, export_id: int, revision: int) -> ModelExport | None:
    """The row, unless a newer request replaced the one the worker built."""
    row = session.get(ModelExport, export_id)
    return row if row is not None and row.details.get("revision") == revision else None


def mark_done(
    session: Session, export_id: int, revision: int, key: str, size: int, sha256: str, details: dict[str, Any]
) -> None:
    row = _current(session, export_id, revision)
    if row is not None:
        row.status, row.status_reason = ArtifactStatus.READY, None
        row.key, row.size_bytes, row.sha256 = key, size, sha256
        row.details = {"revision": revision, **details}


def mark_failed(session: Session, export_id: int, revision: int, reason: str) -> None:
    row = _current(session, export_id, revision)
    if row is not None:
        row.status, row.status_reason = ArtifactStatus.FAILED, reason
