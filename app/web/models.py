"""Models: the registry per project with deployments (deploy, roll back, revert), weights download, and
the Test page (drop images, see the predictions drawn)."""

from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.deps import DatabaseDep, SessionDep
from app.core.errors import invalid, not_found
from app.core.settings import get_settings
from app.core.storage import get_storage
from app.inference import service as inference
from app.inference.protocol import model_ref
from app.inference.service import Params, Upload
from app.model_registry import deployments
from app.model_registry import service as model_service
from app.model_registry.service import ModelFilter
from app.models import Deployment, Project, RegisteredModel
from app.training.schemas import TaskType
from app.web import actions
from app.web.deps import UserDep, WebUser, WriterDep, templates
from app.web.errors import is_htmx

router = APIRouter(include_in_schema=False)


@dataclass
class TaskDeployment:
    project: Project
    task: str
    active: RegisteredModel | None
    history: list[Deployment]


def deployment_states(session: Session, projects: list[Project]) -> list[TaskDeployment]:
    states = []
    for project in projects:
        for task in deployments.deployed_tasks(session, project.id):
            states.append(
                TaskDeployment(
                    project,
                    task,
                    deployments.active_model(session, project.id, task),
                    deployments.history(session, project.id, task)[:10],
                )
            )
    return states


def models_context(session: Session, user: WebUser, project: str | None) -> dict[str, Any]:
    models, total = model_service.list_models(session, ModelFilter(project=project), 200, 0, user.principal)
    stmt = select(Project).where(user.principal.project_filter(Project.id)).order_by(Project.name)
    projects = [p for p in session.scalars(stmt) if project is None or p.name == project]
    return {
        "user": user,
        "models": models,
        "total": total,
        "project": project or "",
        "projects": [p.name for p in session.scalars(stmt)],
        "states": deployment_states(session, projects),
    }


@router.get("/models")
def models_page(request: Request, session: SessionDep, user: UserDep, project: str | None = None) -> Response:
    return templates.TemplateResponse(request, "models.html", models_context(session, user, project or None))


def after_write(request: Request, session: Session, user: WebUser, message: str) -> Response:
    """htmx: the registry re-rendered with what changed; a plain form: back to the page."""
    if not is_htmx(request):
        return RedirectResponse("/models", status_code=303)
    session.flush()
    context = {**models_context(session, user, None), "message": message}
    return templates.TemplateResponse(request, "_models_body.html", context)


@router.post("/models/{model_id:int}/deploy")
def deploy(request: Request, model_id: int, session: SessionDep, user: WriterDep) -> Response:
    row = actions.deploy(session, user.principal, model_id)
    return after_write(request, session, user, f"model {model_id} is the active {row.task_type} model")


@router.post("/projects/{project_id:int}/deployments/{task:str}/{action:str}")
def change_deployment(
    request: Request, project_id: int, task: TaskType, action: str, session: SessionDep, user: WriterDep
) -> Response:
    if action == "rollback":
        row = actions.rollback(session, user.principal, project_id, task)
        message = f"rolled back: the active {task} model is {row.model_id or 'none'}"
    elif action == "revert":
        actions.revert(session, user.principal, project_id, task)
        message = f"reverted: no active {task} model"
    else:
        raise not_found("action", action)
    return after_write(request, session, user, message)


def visible_model(session: Session, principal: Principal, model_id: int) -> RegisteredModel:
    return model_service.get_model(session, model_id, principal=principal)


@router.get("/models/{model_id:int}/weights")
def download(model_id: int, session: SessionDep, user: UserDep) -> Response:
    model = visible_model(session, user.principal, model_id)
    path = model_service.local_weights(model)
    if path is not None:
        return FileResponse(path, media_type="application/octet-stream", filename=f"model-{model.id}.pt")
    presign = getattr(get_storage(), "presigned_url", None)
    if presign is None:
        raise invalid("model_id", "this storage backend cannot serve downloads", 501)
    return RedirectResponse(presign(model_service.weights_key(model)), status_code=307)


@router.get("/models/{model_id:int}/test")
def test_page(request: Request, model_id: int, session: SessionDep, user: UserDep) -> Response:
    model = visible_model(session, user.principal, model_id)
    return templates.TemplateResponse(request, "model_test.html", {"user": user, "model": model})


@router.post("/models/{model_id:int}/predict")
async def predict(
    model_id: int,
    db: DatabaseDep,
    user: UserDep,
    files: Annotated[list[UploadFile], File()],
    conf: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
) -> Response:
    """The inference endpoint's path (same service calls) for the Test page: a few images, one answer.
    Every box comes back (conf 0 by default, up to 300 an image) so the page's slider filters without
    asking again. Reads only: viewers may test a model, as they may call `POST /api/v1/inference`."""
    settings = get_settings()
    if len(files) > settings.inference_sync_max_images:
        raise invalid("files", f"at most {settings.inference_sync_max_images} images at once", 413)
    wait = settings.inference_timeout_seconds

    def resolve_and_check() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        uploads = [Upload(f.filename or f"image-{i}", f.file) for i, f in enumerate(files)]
        with db.read_session() as session:
            ref = model_ref(inference.resolve_model(session, user.principal, model_id, None, None))
            return ref, inference.images_of(session, user.principal, uploads, [])

    ref, images = await anyio.to_thread.run_sync(resolve_and_check)
    return JSONResponse(await inference.infer(ref, images, Params(conf, 0.7, None, 300, 5), wait))
