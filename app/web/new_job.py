"""The New job page: catalog, User/Developer mode from the config schema, dataset folder or version,
start from an earlier job or model, Preflight (as you type, and on demand), Start."""

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.configs.catalog import catalog
from app.configs.schema import Param, params_for
from app.core.auth import Principal
from app.core.deps import SessionDep
from app.core.errors import AppError
from app.core.jobs import JobStatus
from app.core.redis import get_redis
from app.core.visibility import ensure_project_usable
from app.models import DatasetVersion, TrainingJob
from app.scheduling.pools import known_pools
from app.scheduling.priorities import ROLE_CEILING, Priority
from app.training import schemas
from app.training.preflight import PreflightRead, Problem, preflight
from app.training.service import live_workers_or_none
from app.web import actions
from app.web.deps import UserDep, WriterDep, templates
from app.web.jobs import project_names

router = APIRouter(include_in_schema=False)
TASKS = ("detection", "segmentation", "classification", "pose")
CONFIG_PREFIX = "cfg."
NO_SLOT = frozenset({"csrf_token", "task_type", "mode", "description"})  # form fields without an error slot


def field_id(name: str) -> str:
    """A DOM id for a form field's error slot (`config.lr0` -> `err-config-lr0`)."""
    return "err-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


@dataclass(frozen=True)
class Choices:
    projects: list[str]
    versions: list[DatasetVersion]
    previous_jobs: list[TrainingJob]
    priorities: list[str]  # the levels the key's role may ask for
    pools: list[str]  # pools a job may require: announced by a worker or declared (TRAINYARD_POOLS)


def choices(session: Session, principal: Principal) -> Choices:
    versions = select(DatasetVersion).where(
        principal.project_filter(DatasetVersion.project_id), DatasetVersion.status.in_(["ready", "training"])
    )
    jobs = select(TrainingJob).where(
        principal.project_filter(TrainingJob.project_id),
        TrainingJob.status == JobStatus.COMPLETED,
    )
    return Choices(
        projects=project_names(session, principal),
        versions=list(session.scalars(versions.order_by(DatasetVersion.id.desc()).limit(200))),
        previous_jobs=list(session.scalars(jobs.order_by(TrainingJob.id.desc()).limit(200)).unique()),
        priorities=[p.name.lower() for p in Priority if p <= ROLE_CEILING[principal.role]],
        pools=sorted(known_pools(live_workers_or_none())),
    )


def params(task: str, mode: str) -> dict[str, list[Param]]:
    """The config fields to show, grouped: the safe subset in user mode, everything in developer mode."""
    groups: dict[str, list[Param]] = {}
    for param in params_for(task):
        if mode == "developer" or param.user_mode:
            groups.setdefault(param.group, []).append(param)
    return groups


def parse_value(text: str) -> Any:
    """A form field as YAML (`0.01`, `true`, `[0, 1]`), so the resolver checks real types."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def job_request(form: FormData) -> tuple[schemas.JobCreate | None, list[Problem]]:
    """The form as the API's JobCreate; problems of shape (a missing name...) when it is not one."""
    config = {
        key.removeprefix(CONFIG_PREFIX): parse_value(str(value))
        for key, value in form.multi_items()
        if key.startswith(CONFIG_PREFIX) and str(value).strip() != ""
    }
    fields: dict[str, Any] = {
        k: str(form.get(k, "")).strip()
        for k in (
            "name",
            "project",
            "task_type",
            "model_name",
            "dataset_path",
            "description",
            "priority",
            "pool",
        )
    }
    fields = {k: v for k, v in fields.items() if v}
    for key in ("dataset_version_id", "checkpoint_job_id", "checkpoint_model_id"):
        value = str(form.get(key, "")).strip()
        if value:
            fields[key] = value
    try:
        return schemas.JobCreate(**fields, config=config), []
    except ValidationError as exc:
        return None, [
            Problem(field=".".join(str(p) for p in e["loc"]), reason=e["msg"]) for e in exc.errors()
        ]


def context(request: Request, session: Session, user: Any, form: dict[str, Any]) -> dict[str, Any]:
    task = str(form.get("task_type")) if form.get("task_type") in TASKS else "detection"
    mode: Literal["user", "developer"] = "developer" if form.get("mode") == "developer" else "user"
    return {
        "user": user,
        "form": form,
        "task": task,
        "mode": mode,
        "tasks": TASKS,
        "models": [m for m in catalog() if task in m.tasks],
        "groups": params(task, mode),
        "choices": choices(session, user.principal),
        "field_id": field_id,
        "config_prefix": CONFIG_PREFIX,
    }


@router.get("/jobs/new")
def new_job_page(request: Request, session: SessionDep, user: UserDep) -> Response:
    form = dict(request.query_params)
    return templates.TemplateResponse(request, "new_job.html", context(request, session, user, form))


def run_preflight(session: Session, user: Any, form: FormData) -> tuple[schemas.JobCreate | None, Any]:
    body, problems = job_request(form)
    if body is None:
        return None, PreflightView(problems)
    try:
        ensure_project_usable(session, user.principal, body.project)
    except AppError as exc:
        return None, PreflightView([Problem(field="project", reason=exc.detail)])
    try:
        # As the key: what it may ask for (a priority) and see (folders, versions) is what it may submit.
        return body, preflight(session, body, get_redis(), user.principal)
    except AppError as exc:  # a 404: what the key may not see, worded as if it did not exist
        field = exc.errors[0].field if exc.errors else "request"
        return None, PreflightView([Problem(field=field, reason=exc.detail)])


@dataclass
class PreflightView:
    """Problems found before the preflight could run (the form is not a job request yet)."""

    problems: list[Problem]
    ok: bool = False
    warnings: tuple[str, ...] = ()
    config: None = None
    dataset: None = None


@router.post("/jobs/new/preflight")
async def new_job_preflight(request: Request, session: SessionDep, user: UserDep) -> Response:
    """Every problem of the form, as `POST /jobs` would find it, without creating anything."""
    form = await request.form()
    _body, result = run_preflight(session, user, form)
    return preflight_response(request, result, form)


def preflight_response(request: Request, result: PreflightRead | PreflightView, form: FormData) -> Response:
    by_field: dict[str, list[str]] = {}
    for problem in result.problems:
        name = problem.field.removeprefix("config.")
        name = CONFIG_PREFIX + name if problem.field.startswith("config.") else name
        by_field.setdefault(name, []).append(problem.reason)
    names = [k for k in form if k not in NO_SLOT]
    ctx = {"result": result, "by_field": by_field, "names": names, "field_id": field_id}
    return templates.TemplateResponse(request, "_preflight.html", ctx)


@router.post("/jobs/new")
async def new_job_start(request: Request, session: SessionDep, user: WriterDep) -> Response:
    form = await request.form()
    body, result = run_preflight(session, user, form)
    if body is None or not result.ok:
        if request.headers.get("HX-Request") == "true":
            return preflight_response(request, result, form)
        ctx = context(request, session, user, dict(form))
        ctx["preflight"] = result
        return templates.TemplateResponse(request, "new_job.html", ctx, status_code=422)
    job = actions.submit(session, user.principal, body)
    session.flush()
    target = f"/jobs/{job.id}"
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)
