"""Preflight: every check of a job submission, run without creating anything, for the UI's Start screen.

`problems` are what would make `POST /jobs` refuse the request (`ok` is false when there is any), but
what the key may not see (another project, its folder or version) is a 404, exactly as `POST /jobs` says;
`warnings` are valid choices that may not do what the user expects, and an empty training queue
(the job would wait until a worker comes up).
"""

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.configs.schemas import ResolvedConfigRead
from app.core.auth import Principal, PrincipalDep
from app.core.deps import SessionDep
from app.core.errors import AppError, FieldError
from app.core.naming import slugify
from app.core.redis import get_redis
from app.core.tasks import Queue, training_queue
from app.core.visibility import ensure_project_usable, get_visible
from app.core.workers import live_workers
from app.models import DatasetVersion, Project
from app.scheduling import pools, priorities
from app.training import schemas, service
from app.training.checkpoints import resolve_starting_point
from app.training.frameworks import framework
from app.versions.usage import check_usable

log = logging.getLogger("operations.training")
router = APIRouter(prefix="/api/v1/training", tags=["training"])
T = TypeVar("T")


class Problem(BaseModel):
    field: str
    reason: str


class NameCheck(BaseModel):
    project: str
    name: str
    slug: str
    available: bool


class ModelCheck(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    source: str | None  # the Ultralytics model YAML, or the script of a framework-free trainer


class DatasetCheck(BaseModel):
    path: str | None
    classes: list[str]
    num_classes: int


class WorkerCheck(BaseModel):
    queue: str
    available: bool
    workers: list[dict[str, Any]]


class PreflightRead(BaseModel):
    ok: bool
    problems: list[Problem]
    warnings: list[str]
    name: NameCheck
    model: ModelCheck
    config: ResolvedConfigRead | None
    dataset: DatasetCheck | None
    workers: WorkerCheck


class _Checks:
    """Runs each check, keeping its result or collecting its problems, so the UI sees all at once."""

    def __init__(self) -> None:
        self.problems: list[FieldError] = []

    def run(self, check: Callable[[], T]) -> T | None:
        try:
            return check()
        except AppError as exc:
            if exc.status == 404:  # what the key may not see ends a preflight as it ends a submission
                raise
            self.problems.extend(exc.errors or [FieldError("request", exc.detail)])
            return None


def preflight(
    session: Session, body: schemas.JobCreate, client: redis.Redis, principal: Principal | None = None
) -> PreflightRead:
    """Everything `create_job` would check, plus the dataset's classes and the training queue."""
    checks = _Checks()
    dataset = checks.run(lambda: service.check_dataset(session, body, principal))
    source = checks.run(lambda: _model_source(body))
    data = None if dataset is None or body.task_type == "classification" else str(dataset.path / "data.yaml")
    resolved = checks.run(lambda: service.resolve_job_config(body, model=source, data=data))
    checks.run(lambda: resolve_starting_point(session, body, principal))
    checks.run(lambda: _check_version(session, body, principal))
    name = _name_check(session, body, checks)
    _scheduling_checks(body, principal, checks)
    workers = _worker_check(client, body.pool)
    warnings = list(resolved.warnings) if resolved else []
    if not workers.available:
        where = f"pool {body.pool!r}" if body.pool else f"the {Queue.TRAINING} queue"
        warnings.append(f"no live worker serves {where}: the job would wait until one starts")
    if dataset is not None and not dataset.checked:
        warnings.append(
            f"dataset_path {body.dataset_path!r} is not on the API's host: the worker that runs the job "
            "reads it on its own host, and fails the job if it is not there"
        )
    classes = dataset.classes if dataset is not None else []
    return PreflightRead(
        ok=not checks.problems,
        problems=[Problem(field=p.field, reason=p.reason) for p in checks.problems],
        warnings=warnings,
        name=name,
        model=ModelCheck(model_name=body.model_name, source=source),
        config=ResolvedConfigRead.model_validate(resolved, from_attributes=True) if resolved else None,
        dataset=None
        if dataset is None
        else DatasetCheck(path=str(dataset.path), classes=classes, num_classes=len(classes)),
        workers=workers,
    )


def _model_source(body: schemas.JobCreate) -> str:
    return framework(body.framework).model_source(body.model_name, body.task_type)


def _check_version(session: Session, body: schemas.JobCreate, principal: Principal | None) -> None:
    """The dataset version the job names, checked as a submission checks it (without claiming it)."""
    if body.dataset_version_id is not None:
        version = get_visible(session, principal, DatasetVersion, body.dataset_version_id)
        project_id = session.scalar(select(Project.id).where(Project.name == body.project))
        check_usable(version, project_id, body.task_type)


def _name_check(session: Session, body: schemas.JobCreate, checks: _Checks) -> NameCheck:
    slug = slugify(body.name)
    taken = service.job_name_taken(session, body.project, body.name)
    if taken:
        checks.problems.append(
            FieldError("name", f"a job named {body.name!r} (or with the same slug) exists in this project")
        )
    clash = session.scalar(
        select(Project.name).where(Project.slug == slugify(body.project), Project.name != body.project)
    )
    if clash is not None:
        reason = f"project {clash!r} has the same slug; use its exact name"
        checks.problems.append(FieldError("project", reason))
    return NameCheck(project=body.project, name=body.name, slug=slug, available=not taken)


def _scheduling_checks(body: schemas.JobCreate, principal: Principal | None, checks: _Checks) -> None:
    """The priority the key's role may ask for, and a pool some worker serves or the operator declared."""
    role = principal.role if principal is not None else None
    checks.run(lambda: priorities.allowed(priorities.parse(body.priority), role))
    pool = body.pool
    if pool is not None:
        checks.run(lambda: pools.check_pool(pool, service.live_workers_or_none()))


def _worker_check(client: redis.Redis, pool: str | None) -> WorkerCheck:
    """The live workers that would run the job: those of the training queue (of its pool, if it needs one)."""
    try:
        workers = [
            w
            for w in live_workers(client)
            if Queue.TRAINING in w.get("queues", []) and (pool is None or w.get("pool") == pool)
        ]
    except redis.RedisError:
        log.warning("preflight could not read worker presence", exc_info=True)
        workers = []
    return WorkerCheck(queue=training_queue(pool), available=bool(workers), workers=workers)


@router.post("/preflight", response_model=PreflightRead)
def post_preflight(body: schemas.JobCreate, session: SessionDep, principal: PrincipalDep) -> PreflightRead:
    """Check a job submission as `POST /jobs` would, and show what it would run, without creating it.
    Like submitting, it needs a key that may write to the project (404 for a project it does not cover)."""
    ensure_project_usable(session, principal, body.project)
    return preflight(session, body, get_redis(), principal)
