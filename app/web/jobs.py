"""The jobs list and the job page, and the job actions (stop, cancel, resume)."""

import json
from functools import lru_cache
from typing import Annotated

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.deps import SessionDep
from app.core.errors import AppError, invalid, not_found
from app.core.events import EventType
from app.core.jobs import JobStatus
from app.core.storage import LocalStorage, get_storage
from app.core.visibility import ensure_visible
from app.models import Project, TrainingJob
from app.training import schemas, service
from app.training.frameworks import framework
from app.web import actions, views
from app.web.deps import UserDep, WriterDep, templates
from app.web.errors import is_htmx

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
LOG_TAIL = 200


def visible_job(session: Session, principal: Principal, job_id: int) -> TrainingJob:
    job = service.get_job(session, job_id)
    ensure_visible(principal, job.project_id, "training job", job_id)
    return job


def project_names(session: Session, principal: Principal) -> list[str]:
    stmt = select(Project.name).where(principal.project_filter(Project.id)).order_by(Project.name)
    return list(session.scalars(stmt))


@router.get("/")
def home() -> Response:
    return RedirectResponse("/jobs", status_code=303)


@router.get("/jobs")
def jobs_page(
    request: Request,
    session: SessionDep,
    user: UserDep,
    project: str | None = None,
    status: Annotated[JobStatus | None, Query()] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    project = project or None
    jobs, total = service.list_jobs(
        session, project, status, PAGE_SIZE, (page - 1) * PAGE_SIZE, user.principal
    )
    context = {
        "user": user,
        "rows": views.job_rows(session, jobs),
        "total": total,
        "page": page,
        "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "project": project or "",
        "status": status.value if status else "",
        "projects": project_names(session, user.principal),
        "statuses": [s.value for s in JobStatus],
    }
    return templates.TemplateResponse(request, "jobs.html", context)


def chart_data(history: schemas.MetricsHistory) -> list[dict[str, object]]:
    """Points as the page's charts read them (the live `metrics` rows carry the same shape)."""
    return [e.model_dump() for e in history.epochs]


@router.get("/jobs/{job_id:int}")
def job_page(request: Request, job_id: int, session: SessionDep, user: UserDep) -> Response:
    job = visible_job(session, user.principal, job_id)
    after = job.last_event_seq  # the page shows everything up to here; the stream sends what follows
    history = service.metrics_history(session, job_id)
    progress = views.latest_of_type(session, [job_id], EventType.PROGRESS).get(job_id)
    context = {
        "user": user,
        "job": job,
        "job_id": job.id,
        "after": after,
        "points": history.epochs,
        "best": views.best_of(history.epochs),
        "progress": views.Progress.of(progress.data) if progress else None,
        "logs": views.log_tail(session, job_id, LOG_TAIL),
        "checkpoints": service.checkpoints(session, job_id),
        "config_yaml": yaml.safe_dump(job.config, sort_keys=False),
        "cli_preview": cli_preview(job),
        "attempts": views.attempts(session, job),
        "actions": views.actions_for(job.status),
        "status": job.status,
        "attempt": job.attempt,
        "waiting": views.waiting(session, [job.id] if job.status == JobStatus.QUEUED else []).get(job.id),
    }
    return templates.TemplateResponse(request, "job.html", context)


# htmx stops polling an element when the answer has this status.
HTMX_STOP_POLLING = 286


@router.get("/jobs/{job_id:int}/waiting")
def job_waiting(request: Request, job_id: int, session: SessionDep, user: UserDep) -> Response:
    """Why the queued job waits, for the job page's polling; once it is not queued, the end of polling."""
    job = visible_job(session, user.principal, job_id)
    waiting = views.waiting(session, [job.id] if job.status == JobStatus.QUEUED else []).get(job.id)
    if waiting is None:
        return Response(status_code=HTMX_STOP_POLLING)
    return templates.TemplateResponse(request, "_waiting.html", {"waiting": waiting})


def cli_preview(job: TrainingJob) -> str:
    """The `yolo train ...` line of the job's resolved config (what the worker runs)."""
    config = json.dumps(job.config, sort_keys=True)
    return resolved_preview(job.framework, job.task_type, config, f"{job.model_name}.pt", job.dataset_path)


@lru_cache(maxsize=1024)
def resolved_preview(name: str, task_type: str, config: str, model: str, data: str | None) -> str:
    # Once per distinct config, not on every view of the page: resolving a config and dumping its YAML
    # cost a tenth of the page's server time, and logged a line each time.
    try:
        return framework(name).resolve(task_type, json.loads(config), model, data).cli_preview
    except (AppError, ValueError) as exc:
        return f"# no preview: {exc}"


@router.post("/jobs/{job_id:int}/{action:str}")
def job_action(request: Request, job_id: int, action: str, session: SessionDep, user: WriterDep) -> Response:
    """Stop, cancel or resume; htmx gets the outcome inline, a plain form goes back to the job page."""
    if action not in actions.TRANSITIONS:
        raise not_found("action", action)
    job = actions.act(session, user.principal, job_id, action)
    if not is_htmx(request):
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)
    context = {"message": f"{action}: the job is {job.status} now"}
    return templates.TemplateResponse(request, "_outcome.html", context)


@router.get("/jobs/{job_id:int}/weights/{kind:str}")
def download_checkpoint(job_id: int, kind: str, session: SessionDep, user: UserDep) -> Response:
    job = visible_job(session, user.principal, job_id)
    key = {"best": job.best_checkpoint, "last": job.last_checkpoint}.get(kind)
    if key is None:
        raise not_found("checkpoint", kind)
    storage = get_storage()
    if not isinstance(storage, LocalStorage):
        presign = getattr(storage, "presigned_url", None)
        if presign is None:
            raise invalid("kind", "this storage backend cannot serve downloads", 501)
        return RedirectResponse(presign(key), status_code=307)
    if not storage.exists(key):
        raise not_found("checkpoint", kind)
    return FileResponse(storage.path(key), filename=f"{job.slug}-{kind}.pt")
