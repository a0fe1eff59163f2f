"""Fleet: workers (device, current job, heartbeat, state), queue depths and the oldest waiting job, each
worker's warm models; drain and load/unload for keys that cover every project (workers serve them all)."""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from redis.exceptions import RedisError
from sqlalchemy import select

from app.core.deps import DatabaseDep, SessionDep
from app.core.jobs import JobStatus
from app.core.redis import get_redis
from app.core.tasks import Queue
from app.core.workers import all_workers
from app.fleet.service import as_seen_by
from app.inference import service as inference
from app.models import TrainingJob
from app.web import actions
from app.web.deps import UserDep, WriterDep, templates
from app.web.errors import is_htmx

router = APIRouter(include_in_schema=False)


def warm_models(worker: dict[str, Any]) -> list[dict[str, Any]]:
    if worker.get("status") == "offline":
        return []
    models: list[dict[str, Any]] = inference.worker_models(str(worker["id"])).get("models", [])
    return models


@router.get("/fleet")
def fleet_page(request: Request, session: SessionDep, user: UserDep, message: str | None = None) -> Response:
    client = get_redis()
    workers = as_seen_by(session, user.principal, all_workers(client))
    everything = user.principal.all_projects
    try:
        depths = {queue.value: client.llen(queue.value) for queue in Queue}
    except RedisError:
        depths = {}
    oldest = session.scalars(
        select(TrainingJob)
        .where(TrainingJob.status == JobStatus.QUEUED, user.principal.project_filter(TrainingJob.project_id))
        .order_by(TrainingJob.created_at)
        .limit(1)
    ).first()
    context = {
        "user": user,
        "workers": workers,
        "warm": {w["id"]: warm_models(w) for w in workers} if everything else {},
        "manage": everything and user.can_write,
        "depths": depths,
        "oldest": oldest,
        "message": message,
    }
    return templates.TemplateResponse(request, "fleet.html", context)


def done(request: Request, message: str) -> Response:
    if is_htmx(request):
        return templates.TemplateResponse(request, "_outcome.html", {"message": message})
    return RedirectResponse("/fleet", status_code=303)


@router.post("/fleet/{worker_id}/drain")
def drain(request: Request, worker_id: str, user: WriterDep) -> Response:
    worker = actions.drain(user.principal, worker_id)
    return done(request, f"worker {worker_id} is {worker.status}")


@router.post("/fleet/{worker_id}/models")
async def model_cache(
    request: Request,
    worker_id: str,
    db: DatabaseDep,
    user: WriterDep,
    action: Annotated[str, Form(pattern="^(load|unload)$")],
    model_id: Annotated[int, Form()],
) -> Response:
    await actions.worker_model(db, user.principal, worker_id, action, model_id)
    return done(request, f"worker {worker_id}: {action} model {model_id} done")
