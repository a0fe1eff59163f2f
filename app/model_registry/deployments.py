"""Each project has one active model per task. Deploy swaps it atomically (under the project's row lock)
and appends to the history; rollback restores the state before the newest change; revert leaves none.

The newest `deployments` row of (project, task) is the state, and its `parent_id` points at the row
whose state it replaced, so successive rollbacks walk back through earlier deployments.
"""

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import AppError, ErrorCode, invalid
from app.core.storage import get_storage
from app.model_registry.service import get_model, weights_key
from app.models import Deployment, DeploymentAction, ModelStatus, RegisteredModel
from app.projects.service import get_project

HISTORY_LIMIT = 50


def current(session: Session, project_id: int, task: str) -> Deployment | None:
    stmt = (
        select(Deployment)
        .where(Deployment.project_id == project_id, Deployment.task_type == task)
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def active_model(session: Session, project_id: int, task: str) -> RegisteredModel | None:
    row = current(session, project_id, task)
    return None if row is None or row.model_id is None else session.get(RegisteredModel, row.model_id)


def history(session: Session, project_id: int, task: str) -> list[Deployment]:
    stmt = (
        select(Deployment)
        .where(Deployment.project_id == project_id, Deployment.task_type == task)
        .order_by(Deployment.id.desc())
        .limit(HISTORY_LIMIT)
    )
    return list(session.scalars(stmt))


def deployed_tasks(session: Session, project_id: int) -> list[str]:
    stmt = select(Deployment.task_type).where(Deployment.project_id == project_id).distinct()
    return sorted(session.scalars(stmt))


def check_deployable(model: RegisteredModel, project_id: int, task: str | None) -> None:
    """Weights in storage, validated by a worker (they load and predict), the task, the classes."""
    if model.project_id != project_id:
        raise invalid("model_id", f"model {model.id} belongs to another project")
    if task is not None and task != model.task_type:
        raise invalid("task_type", f"model {model.id} is a {model.task_type} model, not {task}")
    if not model.class_names:
        raise invalid("model_id", f"model {model.id} has no class names")
    if model.status == ModelStatus.FAILED:
        raise invalid("model_id", f"model {model.id} failed validation: {model.status_reason}")
    if model.status != ModelStatus.READY:
        raise AppError(409, ErrorCode.MODEL_NOT_READY, f"model {model.id} is {model.status}, not ready yet")
    if not get_storage().exists(weights_key(model)):
        raise invalid("model_id", f"the weights of model {model.id} are missing from storage", 409)


def deploy(session: Session, project_id: int, model_id: int, task: str | None) -> Deployment:
    get_project(session, project_id, for_update=True)  # serializes changes of this project's state
    model = get_model(session, model_id)
    check_deployable(model, project_id, task)
    now = current(session, project_id, model.task_type)
    if now is not None and now.model_id == model.id:
        return now  # already active: deploying again changes nothing
    return _append(session, project_id, model.task_type, model.id, now, DeploymentAction.DEPLOY, now)


def rollback(session: Session, project_id: int, task: str) -> Deployment:
    get_project(session, project_id, for_update=True)
    now = current(session, project_id, task)
    target = session.get(Deployment, now.parent_id) if now is not None and now.parent_id else None
    if now is None or target is None:
        raise AppError(409, ErrorCode.CONFLICT, f"project {project_id} has no earlier {task} deployment")
    if target.model_id is not None:
        restored = session.get(RegisteredModel, target.model_id)
        if restored is None or restored.status != ModelStatus.READY:
            raise AppError(409, ErrorCode.CONFLICT, f"the previous {task} model is no longer deployable")
    parent = session.get(Deployment, target.parent_id) if target.parent_id else None
    return _append(session, project_id, task, target.model_id, now, DeploymentAction.ROLLBACK, parent)


def revert(session: Session, project_id: int, task: str) -> Deployment | None:
    """No active model for `task` any more (inference then needs an explicit model_id)."""
    get_project(session, project_id, for_update=True)
    now = current(session, project_id, task)
    if now is None or now.model_id is None:
        return now
    return _append(session, project_id, task, None, now, DeploymentAction.REVERT, now)


def _append(
    session: Session,
    project_id: int,
    task: str,
    model_id: int | None,
    now: Deployment | None,
    action: DeploymentAction,
    parent: Deployment | None,
) -> Deployment:
    row = Deployment(
        project_id=project_id,
        task_type=task,
        model_id=model_id,
        previous_model_id=now.model_id if now is not None else None,
        parent_id=parent.id if parent is not None else None,
        action=action,
    )
    session.add(row)
    session.flush()
    return row
