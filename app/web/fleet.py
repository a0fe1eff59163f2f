"""Fleet: workers (device, current job, heartbeat, state), queue depths and the oldest waiting job, each
worker's warm models; drain and load/unload for keys that cover every project (workers serve them all)."""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.deps import DatabaseDep, SessionDep
from app.core.jobs import JobStatus
from app.core.redis import get_redis
from app.core.workers import all_workers
from app.fleet.service import as_seen_by
from app.inference import service as inference
from app.models import TrainingJob
from app.scheduling.pools import known_pools, queue_names
from app.web import actions
from app.web.deps import UserDep, WriterDep, templates
from app.web.errors import is_htmx

router = APIRouter(include_in_schema=False)


def warm_models(worker: dict[str, Any]) -> list[dict[str, Any]]:
    if worker.get("status") == "offline":
        return []
    models: list[dict[str, Any]] = inference.worker_models(str(worker["id"])).get("models", [])
    return models


@dataclass(frozen=True)
class PoolView:
    name: str
    workers: int  # online or draining
    busy: int  # of those, running a job
    queued: int  # queued jobs that need this pool


def pool_views(session: Session, workers: list[dict[str, Any]]) -> list[PoolView]:
    """Each known pool (announced by a worker or declared in TRAINYARD_POOLS) with its live workers and the
    queued jobs that need it: a pool with queued jobs and no worker is why they wait."""
    queued = dict(
        session.execute(
            select(TrainingJob.pool, func.count())
            .where(TrainingJob.status == JobStatus.QUEUED, TrainingJob.pool.is_not(None))
            .group_by(TrainingJob.pool)
        ).all()
    )
    views = []
    for name in sorted(known_pools(workers) | {pool for pool in queued if pool is not None}):
        live = [w for w in workers if w.get("pool") == name and w.get("status") != "offline"]
        busy = sum(1 for w in live if w.get("current_job") is not None)
        views.append(PoolView(name, len(live), busy, queued.get(name, 0)))
    return views


@router.get("/fleet")
def fleet_page(request: Request, session: SessionDep, user: UserDep, message: str | None = None) -> Response:
    client = get_redis()
    registry = all_workers(client)
    workers = as_seen_by(session, user.principal, registry)
    everything = user.principal.all_projects
    try:
        depths = {queue: client.llen(queue) for queue in queue_names(registry)}
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
        "pools": pool_views(session, registry),
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
