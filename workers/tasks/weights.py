"""Tasks of the inference queue on weight files: check imported base weights, strip a registered
model's weights of optimizer state, export a model. Each takes an id and reloads its row; the row's
status says how it went (a failure is recorded with its reason, never raised into Celery)."""

import logging
import os
import tempfile
from pathlib import Path

# Before anything imports Ultralytics: no downloads, no pip installs at run time (the `export` extra
# installs what the exporter wants).
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

from app.core.db import get_database
from app.core.storage import get_storage
from app.core.tasks import TaskName
from app.model_registry import exports, service
from app.models import BaseWeights, RegisteredModel
from app.weights.service import mark_validated
from workers.celery_app import celery_app
from workers.ultralytics import weights as ultralytics_weights
from workers.weights_cache import file_sha256, get_weights_cache

log = logging.getLogger("operations.inference")


@celery_app.task(name=TaskName.VALIDATE_WEIGHTS)
def validate_weights(weights_id: int) -> None:
    """Fetch imported base weights through storage and load them: `ready`, or `failed` with the reason."""
    with get_database().session() as session:
        weights = session.get(BaseWeights, weights_id)
        if weights is None:
            return
        key, sha256, task = weights.weights_key, weights.sha256, weights.task_type
    ok, reason, names = True, None, None
    try:
        path = get_weights_cache().fetch(get_storage(), key, sha256)
        names = ultralytics_weights.load_and_check(path, task)
    except Exception as exc:
        ok, reason = False, f"base weights {weights_id} {exc}"
    with get_database().session() as session:
        mark_validated(session, weights_id, ok, reason, names)
    log.info("base weights %s validated: %s", weights_id, "ready" if ok else reason)


@celery_app.task(name=TaskName.LEAN_MODEL)
def lean_model(model_id: int) -> None:
    """Store the registered model's weights without optimizer state, then validate the model."""
    with get_database().session() as session:
        model = session.get(RegisteredModel, model_id)
        if model is None:
            return
        source_key, target_key, revision = model.weights_key, model.stable_key, model.revision
    storage = get_storage()
    try:
        with tempfile.TemporaryDirectory(prefix="trainyard-lean-") as tmp:
            source = storage.get_file(source_key, Path(tmp) / "best.pt")
            lean = Path(tmp) / "lean.pt"
            ultralytics_weights.strip(source, lean)
            size = storage.put_file(target_key, lean)
        with get_database().session() as session:
            service.record_lean(session, model_id, revision, target_key, size)
        log.info("model %s weights stripped to %s bytes", model_id, size)
    except Exception:
        # The model keeps its full checkpoint; validation still decides whether it serves.
        log.warning("could not strip the weights of model %s", model_id, exc_info=True)
    service.queue_validation(model_id)


@celery_app.task(name=TaskName.EXPORT_MODEL)
def export_model(export_id: int) -> None:
    """Export a registered model and check the export by running it beside the `.pt`."""
    with get_database().session() as session:
        job = exports.load(session, export_id)
    if job is None:
        return
    storage = get_storage()
    try:
        with tempfile.TemporaryDirectory(prefix="trainyard-export-") as tmp:
            weights = storage.get_file(job.weights_key, Path(tmp) / "weights.pt")
            result = ultralytics_weights.export(weights, job.format, job.task, job.imgsz, Path(tmp))
            size = storage.put_file(job.target_key, result.path)
            sha256 = file_sha256(result.path)
        with get_database().session() as session:
            exports.mark_done(session, export_id, job.revision, job.target_key, size, sha256, result.details)
        log.info("model export %s (%s) done: %s bytes", export_id, job.format, size)
    except Exception as exc:
        reason = (
            str(exc)
            if isinstance(exc, ultralytics_weights.WeightsProblem)
            else f"{type(exc).__name__}: {exc}"
        )
        log.warning("model export %s failed: %s", export_id, reason, exc_info=True)
        with get_database().session() as session:
            exports.mark_failed(session, export_id, job.revision, reason)
