"""Base weights: import a `.pt` (checked without torch, stored by content), list, show, delete.

Import refuses anything that is not an Ultralytics checkpoint of a known task before a byte is stored
(app/weights/checkpoint.py); a worker then loads the stored file for real and marks it `ready` or
`failed` (`trainyard.validate_weights` on the inference queue), since the API never imports torch.
"""

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.db import on_commit
from app.core.errors import AppError, ErrorCode, FieldError, invalid, not_found
from app.core.naming import is_valid_name
from app.core.pagination import paginate
from app.core.storage import get_storage
from app.core.tasks import Queue, TaskName, send_task
from app.models import ArtifactStatus, BaseWeights, RegisteredModel, TrainingJob
from app.models.base import utcnow
from app.weights.checkpoint import CheckpointInfo, NotAModel, inspect_checkpoint

log = logging.getLogger("app.backend")
CHUNK = 1024 * 1024


def conflict(field: str, reason: str) -> AppError:
    return AppError(409, ErrorCode.CONFLICT, f"{field}: {reason}", [FieldError(field, reason)])


def import_weights(
    session: Session, upload: IO[bytes], filename: str, name: str | None
) -> tuple[BaseWeights, bool]:
    """Check and store an uploaded `.pt`; (the record, whether it is new). The same bytes give the same
    record whatever the name; a bad file is a 422 naming `file`, and nothing is stored."""
    name = name if name is not None else _default_name(filename)
    if not is_valid_name(name):
        raise invalid(
            "name", "letters, digits, space, '_', '.', '-' (at most 100), starting with a letter or digit"
        )
    with tempfile.TemporaryDirectory(prefix="trainyard-weights-") as tmp:
        local = Path(tmp) / "upload.pt"
        sha256, size = _copy_hashing(upload, local)
        existing = session.scalar(select(BaseWeights).where(BaseWeights.sha256 == sha256))
        if existing is not None:
            if existing.status != ArtifactStatus.READY:
                existing_id = existing.id
                on_commit(session, lambda: request_validation(existing_id))
            return existing, False
        try:
            with local.open("rb") as file:
                info = inspect_checkpoint(file)
        except NotAModel as exc:
            raise invalid("file", f"not an Ultralytics model: {exc}") from exc
        if session.scalar(select(BaseWeights.id).where(BaseWeights.name == name)) is not None:
            raise conflict("name", f"base weights named {name!r} exist with other content")
        weights = _record(info, name, sha256, size, filename)
        get_storage().put_file(weights.weights_key, local)
    try:
        with session.begin_nested():
            session.add(weights)
    except IntegrityError:
        # Another import of the same bytes (or name) committed first.
        existing = session.scalar(select(BaseWeights).where(BaseWeights.sha256 == sha256))
        if existing is None:
            raise conflict("name", f"base weights named {name!r} exist with other content") from None
        return existing, False
    weights_id = weights.id
    on_commit(session, lambda: request_validation(weights_id))
    return weights, True


def _default_name(filename: str) -> str:
    stem = Path(filename or "weights.pt").name.removesuffix(".pt")
    return stem[:100] or "weights"


def _copy_hashing(upload: IO[bytes], target: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with target.open("wb") as out:
        while chunk := upload.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size == 0:
        raise invalid("file", "the file is empty")
    return digest.hexdigest(), size


def _record(info: CheckpointInfo, name: str, sha256: str, size: int, filename: str) -> BaseWeights:
    return BaseWeights(
        name=name,
        sha256=sha256,
        size_bytes=size,
        framework="ultralytics",
        task_type=info.task_type,
        architecture=info.architecture,
        class_names=info.class_names,
        source=Path(filename or "upload").name[:200],
        ultralytics_version=info.ultralytics_version,
        weights_key=BaseWeights.key_of(sha256),
        status=ArtifactStatus.PENDING,
    )


def request_validation(weights_id: int) -> None:
    try:
        send_task(TaskName.VALIDATE_WEIGHTS, [weights_id], Queue.INFERENCE)
    except Exception:
        # Stays `pending`; importing the same file again asks again.
        log.warning("could not queue the validation of base weights %s", weights_id, exc_info=True)


def get_weights(session: Session, ident: int | str) -> BaseWeights:
    """By id, or by name (what a job's `weights` field names); every key may see base weights."""
    column = BaseWeights.id if isinstance(ident, int) else BaseWeights.name
    weights = session.scalar(select(BaseWeights).where(column == ident))
    if weights is None:
        raise not_found("base weights", ident)
    return weights


def list_weights(
    session: Session, task: str | None, limit: int, offset: int
) -> tuple[list[BaseWeights], int]:
    stmt = select(BaseWeights)
    if task is not None:
        stmt = stmt.where(BaseWeights.task_type == task)
    return paginate(session, stmt, [BaseWeights.id.desc()], limit, offset)


def delete_weights(session: Session, weights_id: int) -> None:
    """Delete the record and its file; 409 while a job starts from it or a model descends from it."""
    weights = get_weights(session, weights_id)
    job = session.scalar(select(TrainingJob.id).where(TrainingJob.checkpoint_path == weights.weights_key))
    model = session.scalar(
        select(RegisteredModel.id).where(RegisteredModel.base_weights_sha256 == weights.sha256)
    )
    if job is not None or model is not None:
        user = f"job {job}" if job is not None else f"model {model}"
        raise conflict("weights_id", f"{user} starts from base weights {weights.name!r}; delete it first")
    key = weights.weights_key
    session.delete(weights)
    session.flush()
    on_commit(session, lambda: get_storage().delete(key))


def mark_validated(
    session: Session, weights_id: int, ok: bool, reason: str | None, names: list[str] | None = None
) -> None:
    """A worker's verdict on the stored file (called by the validation task)."""
    weights = session.get(BaseWeights, weights_id)
    if weights is None:
        return
    weights.status = ArtifactStatus.READY if ok else ArtifactStatus.FAILED
    weights.status_reason = reason
    weights.validated_at = utcnow()
    if ok and names:
        weights.class_names = names
