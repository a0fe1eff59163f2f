"""Training jobs as the API sees them: create, query, read back results."""

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.configs.resolver import ResolvedConfig
from app.core.auth import Principal
from app.core.errors import AppError, ErrorCode, FieldError, invalid, not_found
from app.core.events import EventType
from app.core.jobs import JobStatus, TaskType
from app.core.naming import slugify
from app.core.pagination import paginate
from app.core.redis import get_redis
from app.core.visibility import ensure_visible, get_visible, missing, path_visible
from app.core.workers import all_workers
from app.models import Project, TrainingJob, TrainingLog
from app.models.base import as_utc
from app.scheduling import pools, priorities
from app.scheduling import service as scheduling
from app.training import schemas, state
from app.training.checkpoints import resolve_starting_point, starting_config
from app.training.dataset_check import CheckedFolder, check_dataset_folder, dataset_ref, locate_dataset_path
from app.training.frameworks import framework
from app.training.results import events_of_type, recorded_epochs
from app.versions.usage import claim_for_job, yolo_dir

log = logging.getLogger("operations.training")


def get_or_create_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is not None:
        return project
    try:
        with session.begin_nested():
            project = Project(name=name, slug=slugify(name))
            session.add(project)
    except IntegrityError as exc:
        # Another request created it (or a project whose name has the same slug) meanwhile.
        project = session.scalar(select(Project).where(Project.name == name))
        if project is None:
            raise invalid(
                "project", "a project with a name that differs only in case or punctuation exists", 409
            ) from exc
    return project


def usable_project(session: Session, name: str, principal: Principal | None) -> Project:
    """The job's project: an existing one the key covers, or a new one if the key may create it. A scoped
    key cannot tell a project it does not cover from one that does not exist (404 both)."""
    project = session.scalar(select(Project).where(Project.name == name))
    if project is not None:
        ensure_visible(principal, project.id, "project", name)
        return project
    if principal is not None and not principal.all_projects:
        raise not_found("project", name)
    return get_or_create_project(session, name)


@dataclass(frozen=True)
class ValidJob:
    """A job request that passed every check, with what the checks derived from it."""

    config: ResolvedConfig
    dataset: Path | None
    priority: int


def resolve_job_config(
    body: schemas.JobCreate, model: str | None = None, data: str | None = None
) -> ResolvedConfig:
    """The job's resolved config; `model` and `data` only fill the CLI preview."""
    return framework(body.framework).resolve(body.task_type, body.config, model, data)


def check_dataset_given(body: schemas.JobCreate) -> None:
    if body.dataset_id is not None:
        raise invalid("dataset_id", "registered datasets are not available yet; use dataset_path")
    if body.dataset_version_id is not None and body.dataset_path is not None:
        raise invalid("dataset_version_id", "give dataset_path or dataset_version_id, not both")
    needed = framework(body.framework).needs_dataset
    if needed and body.dataset_path is None and body.dataset_version_id is None:
        raise invalid("dataset_path", "required (or dataset_version_id)")


def check_dataset(
    session: Session, body: schemas.JobCreate, principal: Principal | None = None
) -> CheckedFolder | None:
    """The folder `dataset_path` names, checked. One the key may not see is a 404 before anything is said
    about it (whether it exists, what it holds), as for a folder of a project that does not exist."""
    check_dataset_given(body)
    if body.dataset_path is None:
        return None
    server_paths = principal is None or principal.all_projects  # every folder is theirs to see
    path = locate_dataset_path(body.dataset_path, server_paths)
    if not path_visible(session, principal, path):
        raise missing("dataset_path", f"folder {body.dataset_path!r} does not exist")
    return check_dataset_folder(path, body.dataset_path, body.task_type, server_paths)


def validate(session: Session, body: schemas.JobCreate, principal: Principal | None = None) -> ValidJob:
    """Every check a job request must pass before anything is written (first failure raises)."""
    dataset = check_dataset(session, body, principal)
    framework(body.framework).model_source(body.model_name, body.task_type)  # a known model?
    config = resolve_job_config(body)
    role = principal.role if principal is not None else None
    priority = priorities.allowed(priorities.parse(body.priority), role)
    if body.pool is not None:
        pools.check_pool(body.pool, live_workers_or_none())  # never a job that waits forever for a pool
    return ValidJob(config=config, dataset=None if dataset is None else dataset.path, priority=priority)


def job_name_taken(session: Session, project: str, name: str) -> bool:
    """Whether `project` already has a job with this name (or one with the same slug)."""
    stmt = select(TrainingJob.id).join(Project).where(Project.name == project)
    stmt = stmt.where(TrainingJob.slug == slugify(name))
    return session.scalar(stmt.limit(1)) is not None


def create_job(session: Session, body: schemas.JobCreate, principal: Principal | None = None) -> TrainingJob:
    """Validate everything, write the job and its first event, and queue it once committed.

    The checks that need no database come first: on SQLite the first statement takes the write lock
    (app/core/db.py), which is then held only for the few statements that write the job."""
    valid = validate(session, body, principal)
    resolved, dataset = valid.config, valid.dataset
    start = resolve_starting_point(session, body, principal)
    project = usable_project(session, body.project, principal)
    version = None
    if body.dataset_version_id is not None:
        # Marks the version `training`; the worker converts it to YOLO into this folder (cached).
        version = claim_for_job(session, body.dataset_version_id, project, body.task_type, principal)
        dataset = yolo_dir(version, TaskType(body.task_type))
    job = TrainingJob(
        project=project,
        name=body.name,
        slug=slugify(body.name),
        framework=body.framework,
        task_type=body.task_type,
        model_name=body.model_name,
        dataset_path=None if dataset is None else dataset_ref(dataset),
        dataset_version_id=version.id if version is not None else None,
        dataset_manifest_sha256=version.manifest_sha256 if version is not None else None,
        config=starting_config(resolved.values, start),
        checkpoint_path=start.weights_key if start else None,
        checkpoint_model_id=start.model_id if start else None,
        parent_job_id=start.job_id if start else None,
        status=JobStatus.QUEUED,
        priority=valid.priority,
        pool=body.pool,
        attempt=1,
        last_event_seq=0,
        total_epochs=int(resolved.values.get("epochs", 0)),
    )
    session.add(job)
    try:
        session.flush()  # no savepoint: a clash fails the whole request, which is rolled back
    except IntegrityError as exc:
        reason = f"a job named {body.name!r} (or with the same slug) exists in this project"
        raise AppError(409, ErrorCode.CONFLICT, f"name: {reason}", [FieldError("name", reason)]) from exc
    state.queue_new(session, job)
    return job


def get_job(session: Session, job_id: int, principal: Principal | None = None) -> TrainingJob:
    """The job; 404 also when `principal` does not cover its project (as if it did not exist)."""
    return get_visible(session, principal, TrainingJob, job_id)


def list_jobs(
    session: Session,
    project: str | None,
    status: JobStatus | None,
    limit: int,
    offset: int,
    principal: Principal | None = None,
) -> tuple[list[TrainingJob], int]:
    stmt = select(TrainingJob)
    if principal is not None:
        stmt = stmt.where(principal.project_filter(TrainingJob.project_id))
    if project is not None:
        stmt = stmt.join(Project).where(Project.name == project)
    if status is not None:
        stmt = stmt.where(TrainingJob.status == status)
    return paginate(session, stmt, [TrainingJob.id.desc()], limit, offset)


def to_read(job: TrainingJob) -> schemas.JobRead:
    return schemas.JobRead.model_validate(job)


def to_read_with_queue(session: Session, job: TrainingJob) -> schemas.JobRead:
    """The job as `to_read` gives it, with how many jobs wait ahead of it when it is queued."""
    return to_reads_with_queue(session, [job])[0]


def to_reads_with_queue(session: Session, jobs: list[TrainingJob]) -> list[schemas.JobRead]:
    """`to_read_with_queue` for a page of jobs: for the queued ones, their place in the scheduler's line,
    why they wait and an estimated start (app/scheduling/service.py `explain`), computed once."""
    queued = [j.id for j in jobs if j.status == JobStatus.QUEUED]
    pending = scheduling.explain(session, queued, live_workers_or_none()) if queued else {}
    reads = [to_read(j) for j in jobs]
    for read in reads:
        if (why := pending.get(read.id)) is not None:
            read.queue_position = why.position - 1
            read.waiting = schemas.Waiting(**why.as_dict())
    return reads


def live_workers_or_none() -> list[dict[str, Any]]:
    """The worker registry, or nothing when Redis does not answer (a job's reason then says so)."""
    try:
        return all_workers(get_redis())
    except RedisError:
        log.warning("no worker registry for the queue's reasons", exc_info=True)
        return []


def query_logs(
    session: Session,
    job_id: int,
    level: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> schemas.LogPage:
    get_job(session, job_id)
    since, until = as_utc(since), as_utc(until)
    stmt = select(TrainingLog).where(TrainingLog.job_id == job_id)
    if level is not None:
        stmt = stmt.where(TrainingLog.level == level.upper())
    if since is not None:
        stmt = stmt.where(TrainingLog.timestamp >= since)
    if until is not None:
        stmt = stmt.where(TrainingLog.timestamp <= until)
    rows, total = paginate(session, stmt, [TrainingLog.timestamp, TrainingLog.id], limit, offset)
    logs = [schemas.LogRead.model_validate(r) for r in rows]
    return schemas.LogPage(logs=logs, total=total, has_more=offset + len(logs) < total)


def metrics_history(session: Session, job_id: int) -> schemas.MetricsHistory:
    job = get_job(session, job_id)
    epochs = recorded_epochs(session, job)
    return schemas.MetricsHistory(
        job_id=job_id,
        epochs=[
            schemas.EpochMetrics(
                epoch=epoch,
                train_metrics=epochs[epoch].get("train", {}),
                val_metrics=epochs[epoch].get("val", {}),
            )
            for epoch in sorted(epochs)
        ],
    )


def checkpoints(session: Session, job_id: int) -> schemas.CheckpointList:
    job = get_job(session, job_id)
    history = [
        schemas.CheckpointRead(
            kind=e.data["kind"],
            epoch=e.data.get("epoch"),
            path=e.data["path"],
            size_bytes=e.data.get("size_bytes"),
            metrics=e.data.get("metrics", {}),
            attempt=e.data.get("attempt"),
            recorded_at=e.ts,
        )
        for e in events_of_type(session, job_id, EventType.CHECKPOINT)
    ]
    return schemas.CheckpointList(
        job_id=job_id, best=job.best_checkpoint, last=job.last_checkpoint, history=history
    )
