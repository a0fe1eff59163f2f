"""The model registry: register a job's weights (upsert by job), query, download, export-best.

A job that completes (or stops with a best checkpoint) registers its model in the same transaction as
its terminal status; a worker then stores the weights without optimizer state at the model's stable
key (`trainyard.lean_model`: a yolo11n best.pt goes from 26 MB to 5), loads them and predicts once
(`trainyard.validate_model`, both on the inference queue) and marks the model `ready`, or `failed`
with the reason. The job's own best.pt and last.pt are left as they are (last.pt is what resume needs).
"""

import logging
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.db import on_commit
from app.core.errors import invalid
from app.core.settings import get_settings
from app.core.storage import LocalStorage, get_storage
from app.core.tasks import Queue, TaskName, send_task
from app.core.visibility import get_visible
from app.models import BaseWeights, ModelStatus, Project, RegisteredModel, TrainingJob
from app.models.base import utcnow
from app.training.results import recorded_best

log = logging.getLogger("app.backend")

PACKAGES = ("ultralytics", "torch")


def register_job(session: Session, job: TrainingJob) -> RegisteredModel | None:
    """Upsert the model of a finished job (the caller holds the job's row lock); None without best.pt."""
    if not job.best_checkpoint:
        return None
    results = job.results or {}
    info: dict[str, Any] = results.get("model_info") or {}
    best_epoch, best_metrics = recorded_best(session, job)
    # Queried before a new row joins the session: a query then would autoflush it half-filled.
    base_weights_sha256 = base_weights_of(session, job)
    model = session.scalar(select(RegisteredModel).where(RegisteredModel.job_id == job.id))
    if model is None:
        model = RegisteredModel(job_id=job.id, project=job.project)
        session.add(model)
    weights_changed = model.weights_key != job.best_checkpoint or model.job_status != job.status
    model.name = job.name
    model.framework = job.framework
    model.task_type = job.task_type
    model.format = "pt"
    model.architecture = job.model_name
    model.weights_key = job.best_checkpoint
    model.size_bytes = _size(job.best_checkpoint)
    model.imgsz = _int(info.get("imgsz", job.config.get("imgsz")))
    model.class_names = list(info.get("class_names") or dataset_class_names(job))
    model.best_epoch = results.get("best_epoch", best_epoch)
    model.metrics = dict(results.get("best_metrics") or best_metrics)
    model.dataset_path = job.dataset_path
    model.dataset_version_id = job.dataset_version_id
    model.dataset_manifest_sha256 = job.dataset_manifest_sha256
    # Fine-tuning from a registered model is not a job field yet; picked up once it is.
    model.parent_model_id = getattr(job, "checkpoint_model_id", None)
    model.base_weights_sha256 = base_weights_sha256
    model.config = dict(job.config)
    model.package_versions = dict(info.get("package_versions") or installed_versions())
    model.job_status = job.status
    if weights_changed and model.id is not None:
        model.revision += 1
        model.exported_key = None  # the stable copy is of the old weights; the lean task makes a new one
    if weights_changed or model.status != ModelStatus.READY:
        model.status = ModelStatus.PENDING
        model.status_reason = None
        model.validated_at = None
    session.flush()
    model_id = model.id
    on_commit(session, lambda: _send(TaskName.LEAN_MODEL, model_id))
    return model


def _send(task: TaskName, model_id: int) -> None:
    try:
        send_task(task, [model_id], Queue.INFERENCE)
    except Exception:
        # The model stays `pending`; POST /models/{id}/validate asks again.
        log.warning("could not queue %s for model %s", task, model_id, exc_info=True)


def base_weights_of(session: Session, job: TrainingJob) -> str | None:
    """The sha256 of the base weights the job's lineage starts from: the weights it started from, or
    those its parent model or parent job started from."""
    own = BaseWeights.sha256_of(job.checkpoint_path)
    if own is not None or job.checkpoint_path is None:
        return own
    parent = select(RegisteredModel.base_weights_sha256)
    if job.checkpoint_model_id is not None:
        return session.scalar(parent.where(RegisteredModel.id == job.checkpoint_model_id))
    if job.parent_job_id is not None:
        return session.scalar(parent.where(RegisteredModel.job_id == job.parent_job_id))
    return None


def queue_validation(model_id: int) -> None:
    """Ask a worker to load the model and predict once (after its weights were stripped)."""
    _send(TaskName.VALIDATE_MODEL, model_id)


def record_lean(session: Session, model_id: int, revision: int, key: str, size: int) -> None:
    """The worker stored the model's weights without optimizer state at `key` (its stable key)."""
    model = session.scalar(
        select(RegisteredModel)
        .where(RegisteredModel.id == model_id)
        .with_for_update(of=RegisteredModel)
        .execution_options(populate_existing=True)
    )
    if model is None or model.revision != revision:
        return  # deleted, or re-registered meanwhile (its own lean task follows)
    model.exported_key = key
    model.size_bytes = size
    model.revision += 1  # other bytes than the cached ones
    model.updated_at = utcnow()


def request_validation(
    session: Session, model_id: int, principal: Principal | None = None
) -> RegisteredModel:
    """Ask a worker (again) to load and run the model."""
    model = get_model(session, model_id, principal=principal)
    on_commit(session, lambda: queue_validation(model_id))
    return model


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _size(key: str) -> int | None:
    try:
        return get_storage().size(key)
    except Exception:
        return None


def installed_versions() -> dict[str, str]:
    """Versions of the training packages in this process (the worker's, when it registers)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def dataset_class_names(job: TrainingJob) -> list[str]:
    """Class names from the job's dataset: data.yaml `names` (through storage for a folder named by its
    key, as a worker on another host stored it), or the train/<class> folders."""
    if not job.dataset_path:
        return []
    folder = Path(job.dataset_path)
    try:
        if folder.is_absolute():
            text = (folder / "data.yaml").read_bytes()
        else:
            text = get_storage().get_bytes(f"{job.dataset_path}/data.yaml")
        names = yaml.safe_load(text).get("names")
    except Exception:
        names = None
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list):
        return [str(n) for n in names]
    if not folder.is_absolute():
        folder = get_settings().resolved_storage_root / folder
    try:
        return sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    except OSError:
        return []


def get_model(
    session: Session, model_id: int, *, for_update: bool = False, principal: Principal | None = None
) -> RegisteredModel:
    """The model; 404 also when `principal` does not cover its project (as if it did not exist)."""
    return get_visible(session, principal, RegisteredModel, model_id, for_update=for_update)


@dataclass(frozen=True)
class ModelFilter:
    project: str | None = None
    project_id: int | None = None
    task: str | None = None
    status: str | None = None
    metric: str = "mAP50-95"
    min_metric: float | None = None


def list_models(
    session: Session, where: ModelFilter, limit: int, offset: int, principal: Principal | None = None
) -> tuple[list[RegisteredModel], int]:
    """Newest first; `min_metric` applies to `metric` (models without that metric are left out); only
    the projects `principal` covers."""
    stmt = select(RegisteredModel).join(Project)
    if principal is not None:
        stmt = stmt.where(principal.project_filter(RegisteredModel.project_id))
    if where.project is not None:
        stmt = stmt.where(Project.name == where.project)
    if where.project_id is not None:
        stmt = stmt.where(RegisteredModel.project_id == where.project_id)
    if where.task is not None:
        stmt = stmt.where(RegisteredModel.task_type == where.task)
    if where.status is not None:
        stmt = stmt.where(RegisteredModel.status == where.status)
    rows = list(session.scalars(stmt.order_by(RegisteredModel.id.desc())).unique())
    if where.min_metric is not None:
        # Metric names vary by task; JSON paths differ by dialect. Registries are small: filter here.
        threshold = where.min_metric
        rows = [m for m in rows if _metric(m, where.metric) >= threshold]
    return rows[offset : offset + limit], len(rows)


def _metric(model: RegisteredModel, name: str) -> float:
    value = model.metrics.get(name)
    return float(value) if isinstance(value, int | float) else float("-inf")


def weights_key(model: RegisteredModel) -> str:
    """The exported copy when there is one (it survives the job folder), else the job's best.pt."""
    return model.exported_key or model.weights_key


def local_weights(model: RegisteredModel) -> Path | None:
    """The weights as a local file when storage is local; None for S3 (callers redirect)."""
    storage = get_storage()
    key = weights_key(model)
    if not storage.exists(key):
        raise invalid("model_id", f"the weights of model {model.id} are missing from storage", 409)
    return storage.path(key) if isinstance(storage, LocalStorage) else None


def export_best(session: Session, model_id: int, principal: Principal | None = None) -> RegisteredModel:
    """Copy the best checkpoint to the model's stable key (idempotent; a worker's lean copy stays)."""
    model = get_model(session, model_id, for_update=True, principal=principal)
    storage = get_storage()
    if model.exported_key == model.stable_key and storage.exists(model.stable_key):
        return model
    if not storage.exists(model.weights_key):
        raise invalid("model_id", f"the best checkpoint of model {model.id} is missing from storage", 409)
    with tempfile.TemporaryDirectory() as tmp:
        local = storage.get_file(model.weights_key, Path(tmp) / "best.pt")
        model.size_bytes = storage.put_file(model.stable_key, local)
    if model.exported_key != model.stable_key:
        model.revision += 1
    model.exported_key = model.stable_key
    model.updated_at = utcnow()
    session.flush()
    return model


def mark_validated(session: Session, model_id: int, ok: bool, reason: str | None, names: list[str]) -> None:
    """A worker's verdict on the model's weights (called by the validation task)."""
    model = session.get(RegisteredModel, model_id)
    if model is None:
        return
    model.status = ModelStatus.READY if ok else ModelStatus.FAILED
    model.status_reason = reason
    model.validated_at = utcnow()
    if ok and names and not model.class_names:
        model.class_names = names
