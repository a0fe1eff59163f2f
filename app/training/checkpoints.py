"""Training from a checkpoint: a new job starts from a registered model's weights or from another
job's best weights, and records where it started (its parent)."""

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.errors import invalid
from app.models import RegisteredModel, TrainingJob
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
    if body.checkpoint_model_id is not None and body.checkpoint_job_id is not None:
        raise invalid("checkpoint_model_id", "give checkpoint_model_id or checkpoint_job_id, not both")
    if body.checkpoint_model_id is not None:
        model = session.get(RegisteredModel, body.checkpoint_model_id)
        if model is None or (principal is not None and not principal.can_read(model.project_id)):
            raise invalid("checkpoint_model_id", f"model {body.checkpoint_model_id} does not exist")
        if model.task_type != body.task_type or model.framework != body.framework:
            reason = f"model {model.id} is a {model.framework} {model.task_type} model, not {body.task_type}"
            raise invalid("checkpoint_model_id", reason)
        return StartingPoint(model.exported_key or model.weights_key, model.id, model.job_id)
    if body.checkpoint_job_id is not None:
        job = session.get(TrainingJob, body.checkpoint_job_id)
        if job is None or (principal is not None and not principal.can_read(job.project_id)):
            raise invalid("checkpoint_job_id", f"training job {body.checkpoint_job_id} does not exist")
        if job.task_type != body.task_type or job.framework != body.framework:
            reason = f"job {job.id} trained a {job.framework} {job.task_type} model, not {body.task_type}"
            raise invalid("checkpoint_job_id", reason)
        if job.best_checkpoint is None:
            raise invalid("checkpoint_job_id", f"job {job.id} ({job.status}) has no best checkpoint")
        return StartingPoint(job.best_checkpoint, None, job.id)
    return None
