"""Training from a checkpoint: a new job starts from imported base weights (app/weights), a registered
model's weights or another job's best weights, and records where it started (its parent)."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.errors import invalid
from app.core.visibility import find_visible
from app.models import ArtifactStatus, BaseWeights, RegisteredModel, TrainingJob
from app.training import schemas


@dataclass(frozen=True)
class StartingPoint:
    weights_key: str  # storage key of the .pt the trainer starts from
    model_id: int | None
    job_id: int | None


def resolve_starting_point(
    session: Session, body: schemas.JobCreate, principal: Principal | None
) -> StartingPoint | None:
    """None for a job built from its model YAML; 422 naming the field when the source is unusable."""
    given = [
        f for f in ("weights", "checkpoint_model_id", "checkpoint_job_id") if getattr(body, f) is not None
    ]
    if len(given) > 1:
        first, second = given[:2]
        reason = (
            f"give one of weights, checkpoint_model_id or checkpoint_job_id, not both {first} and {second}"
        )
        raise invalid(given[0], reason)
    if body.weights is not None:
        return _base_weights(session, body)
    if body.checkpoint_model_id is not None:
        model = find_visible(session, principal, RegisteredModel, body.checkpoint_model_id)
        if model is None:
            raise invalid("checkpoint_model_id", f"model {body.checkpoint_model_id} does not exist")
        if model.task_type != body.task_type or model.framework != body.framework:
            reason = f"model {model.id} is a {model.framework} {model.task_type} model, not {body.task_type}"
            raise invalid("checkpoint_model_id", reason)
        return StartingPoint(model.exported_key or model.weights_key, model.id, model.job_id)
    if body.checkpoint_job_id is not None:
        job = find_visible(session, principal, TrainingJob, body.checkpoint_job_id)
        if job is None:
            raise invalid("checkpoint_job_id", f"training job {body.checkpoint_job_id} does not exist")
        if job.task_type != body.task_type or job.framework != body.framework:
            reason = f"job {job.id} trained a {job.framework} {job.task_type} model, not {body.task_type}"
            raise invalid("checkpoint_job_id", reason)
        if job.best_checkpoint is None:
            raise invalid("checkpoint_job_id", f"job {job.id} ({job.status}) has no best checkpoint")
        return StartingPoint(job.best_checkpoint, None, job.id)
    return None


def _base_weights(session: Session, body: schemas.JobCreate) -> StartingPoint:
    """Imported base weights (every key may use them) that a worker has loaded, of the job's task and
    model: the class head adapts to the dataset's classes (Ultralytics' transfer), the backbone must fit."""
    weights = session.scalar(select(BaseWeights).where(BaseWeights.name == body.weights))
    if weights is None:
        raise invalid("weights", f"no base weights named {body.weights!r}; see GET /api/v1/weights")
    if weights.status != ArtifactStatus.READY:
        reason = weights.status_reason or "a worker has not loaded them yet"
        raise invalid("weights", f"base weights {weights.name!r} are {weights.status}: {reason}")
    if weights.task_type != body.task_type or weights.framework != body.framework:
        reason = f"{weights.name!r} are {weights.framework} {weights.task_type} weights, not {body.task_type}"
        raise invalid("weights", reason)
    if weights.architecture not in {body.model_name, "custom"}:
        reason = f"{weights.name!r} are {weights.architecture} weights; model_name is {body.model_name}"
        raise invalid("weights", reason)
    return StartingPoint(weights.weights_key, None, None)


def starting_config(values: dict[str, Any], start: StartingPoint | None) -> dict[str, Any]:
    """The resolved config as it will run: a job built from its YAML has no weights to keep, so it is
    never `pretrained` whatever the defaults say."""
    return values if start is not None else {**values, "pretrained": False}
