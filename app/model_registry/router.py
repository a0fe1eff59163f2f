"""HTTP endpoints of the model registry and of project deployments.

Model ids are declared `{model_id:int}` so `/api/v1/models/catalog` and
`/api/v1/models/{model_name}/config-schema` (app/configs) keep matching their own routes.
"""

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse, RedirectResponse

from app.core.auth import PrincipalDep
from app.core.deps import SessionDep
from app.core.errors import invalid
from app.core.inputs import Id
from app.core.jobs import TaskType
from app.core.pagination import PageDep
from app.core.storage import LocalStorage, get_storage
from app.core.visibility import ensure_project_visible
from app.model_registry import deployments, exports, schemas, service
from app.model_registry.service import ModelFilter
from app.models import Deployment, ModelStatus, RegisteredModel
from app.projects.service import get_project

router = APIRouter(prefix="/api/v1/models", tags=["models"])
deployments_router = APIRouter(prefix="/api/v1/projects/{project_id}/deployments", tags=["deployments"])


def to_read(model: RegisteredModel) -> schemas.ModelRead:
    return schemas.ModelRead.model_validate(model)


@router.get("", response_model=schemas.ModelPage)
def list_models(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    project: Annotated[str | None, Query(description="project name")] = None,
    project_id: Id | None = None,
    task: TaskType | None = None,
    status: ModelStatus | None = None,
    metric: Annotated[
        str, Query(max_length=100, description="the metric min_metric applies to")
    ] = "mAP50-95",
    min_metric: float | None = None,
) -> schemas.ModelPage:
    where = ModelFilter(project, project_id, task, status, metric, min_metric)
    models, total = service.list_models(session, where, page.limit, page.offset, principal)
    return schemas.ModelPage(
        items=[to_read(m) for m in models], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/{model_id:int}", response_model=schemas.ModelRead)
def get_model(model_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.ModelRead:
    return to_read(service.get_model(session, model_id, principal=principal))


@router.get("/{model_id:int}/weights", response_model=None)
def download_weights(model_id: Id, session: SessionDep, principal: PrincipalDep) -> Response:
    """The model's `.pt` file (a presigned redirect when storage is S3)."""
    model = service.get_model(session, model_id, principal=principal)
    path = service.local_weights(model)
    filename = f"model-{model.id}-{model.task_type}.pt"
    return _serve(service.weights_key(model), path, filename)


def _serve(key: str, path: Path | None, filename: str) -> Response:
    """The file itself when storage is local, else a presigned redirect (S3)."""
    if path is not None:
        return FileResponse(path, media_type="application/octet-stream", filename=filename)
    presign = getattr(get_storage(), "presigned_url", None)
    if presign is None:
        raise invalid("model_id", "this storage backend cannot serve downloads", 501)
    return RedirectResponse(presign(key), status_code=307)


@router.post("/{model_id:int}/exports", status_code=202, response_model=schemas.ExportRead)
def create_export(
    model_id: Id,
    body: schemas.ExportCreate,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
) -> schemas.ExportRead:
    """Export the model (a worker builds it and checks it against the .pt); 200 with the current export
    when there is one, 202 while it is being built."""
    row, queued = exports.request_export(session, model_id, body.format, principal)
    if not queued:
        response.status_code = 200
    return schemas.ExportRead.model_validate(row)


@router.get("/{model_id:int}/exports", response_model=list[schemas.ExportRead])
def list_exports(model_id: Id, session: SessionDep, principal: PrincipalDep) -> list[schemas.ExportRead]:
    return [schemas.ExportRead.model_validate(r) for r in exports.list_exports(session, model_id, principal)]


@router.get("/{model_id:int}/exports/{export_id:int}", response_model=schemas.ExportRead)
def get_export(
    model_id: Id, export_id: Id, session: SessionDep, principal: PrincipalDep
) -> schemas.ExportRead:
    return schemas.ExportRead.model_validate(exports.get_export(session, model_id, export_id, principal))


@router.get("/{model_id:int}/exports/{export_id:int}/file", response_model=None)
def download_export(model_id: Id, export_id: Id, session: SessionDep, principal: PrincipalDep) -> Response:
    """The exported file once it is `ready` (409 before)."""
    row = exports.get_export(session, model_id, export_id, principal)
    if row.key is None or not get_storage().exists(row.key):
        raise invalid(
            "export_id", f"export {export_id} is {row.status}: {row.status_reason or 'not built yet'}", 409
        )
    storage = get_storage()
    path = storage.path(row.key) if isinstance(storage, LocalStorage) else None
    return _serve(row.key, path, f"model-{model_id}.{exports.SUFFIX[row.format]}")


@router.post("/{model_id:int}/export-best", response_model=schemas.ModelRead)
def export_best(model_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.ModelRead:
    """Copy the best checkpoint to the model's stable location (outside the job folder)."""
    return to_read(service.export_best(session, model_id, principal))


@router.post("/{model_id:int}/validate", status_code=202, response_model=schemas.ModelRead)
def validate_model(model_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.ModelRead:
    """Ask a worker (again) to load the weights and predict once; `status` follows."""
    return to_read(service.request_validation(session, model_id, principal))


def _state(session: SessionDep, project_id: Id, task: str) -> schemas.DeploymentState:
    active = deployments.active_model(session, project_id, task)
    rows = deployments.history(session, project_id, task)
    return schemas.DeploymentState(
        project_id=project_id,
        task_type=task,
        active_model=to_read(active) if active is not None else None,
        history=[schemas.DeploymentRead.model_validate(r) for r in rows],
    )


def _task_of(session: SessionDep, project_id: Id, task: str | None) -> str:
    """`task`, or the only task the project has deployments for."""
    get_project(session, project_id)
    if task is not None:
        return task
    tasks = deployments.deployed_tasks(session, project_id)
    if len(tasks) != 1:
        raise invalid("task", "required: the project has deployments for several tasks, or none")
    return tasks[0]


@deployments_router.get("", response_model=list[schemas.DeploymentState])
def list_deployments(
    project_id: Id, session: SessionDep, principal: PrincipalDep, task: TaskType | None = None
) -> list[schemas.DeploymentState]:
    """The active model and history of each task (or of `task`)."""
    ensure_project_visible(principal, project_id)
    get_project(session, project_id)
    tasks = [task] if task is not None else deployments.deployed_tasks(session, project_id)
    return [_state(session, project_id, t) for t in tasks]


@deployments_router.post("", status_code=201, response_model=schemas.DeploymentState)
def deploy(
    project_id: Id, body: schemas.DeploymentCreate, session: SessionDep, principal: PrincipalDep
) -> schemas.DeploymentState:
    """Validate the model, then make it the project's active model for its task."""
    ensure_project_visible(principal, project_id)
    service.get_model(session, body.model_id, principal=principal)
    row: Deployment = deployments.deploy(session, project_id, body.model_id, body.task_type)
    return _state(session, project_id, row.task_type)


@deployments_router.post("/rollback", response_model=schemas.DeploymentState)
def rollback(
    project_id: Id, session: SessionDep, principal: PrincipalDep, task: TaskType | None = None
) -> schemas.DeploymentState:
    """Restore the active model as it was before the newest change."""
    ensure_project_visible(principal, project_id)
    resolved = _task_of(session, project_id, task)
    deployments.rollback(session, project_id, resolved)
    return _state(session, project_id, resolved)


@deployments_router.delete("", response_model=schemas.DeploymentState)
def revert(
    project_id: Id, session: SessionDep, principal: PrincipalDep, task: TaskType | None = None
) -> schemas.DeploymentState:
    """No active model any more (kept in the history, so rollback brings it back)."""
    ensure_project_visible(principal, project_id)
    resolved = _task_of(session, project_id, task)
    deployments.revert(session, project_id, resolved)
    return _state(session, project_id, resolved)
