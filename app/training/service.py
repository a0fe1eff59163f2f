"""Training jobs as the API sees them: create, query, read back results."""

import json
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.configs.catalog import model_yaml
from app.configs.resolver import ResolvedConfig, resolve_config
from app.core.auth import Principal
from app.core.errors import AppError, ErrorCode, FieldError, invalid, invalid_fields, not_found
from app.core.events import EventType, record_event
from app.core.jobs import JobStatus
from app.core.naming import slugify
from app.core.security import job_token, token_hash
from app.core.visibility import missing, path_visible
from app.datasets.types import TaskType as DiceTask
from app.models import JobEvent, Project, TrainingJob, TrainingLog
from app.models.base import as_utc
from app.training import schemas
from app.training.checkpoints import resolve_starting_point
from app.training.dataset_check import check_dataset_folder, locate_dataset_path
from app.training.recovery import dispatch
from app.versions.usage import claim_for_job, yolo_dir

# The framework-free example trainer (examples/plain_pytorch) takes three settings; the config
# resolver of app/configs only knows Ultralytics.
PLAIN_PARAMS: dict[str, tuple[type, float, float, int | float]] = {
    "epochs": (int, 1, 1000, 3),
    "lr": (float, 1e-6, 10.0, 0.01),
    "batch": (int, 1, 4096, 16),
}
PLAIN_SCRIPT = "examples/plain_pytorch/train.py"


def resolve_plain_config(task_type: str, overrides: dict[str, Any]) -> ResolvedConfig:
    """Defaults <- overrides for the plain PyTorch trainer; 422 listing every bad field."""
    errors = []
    if task_type != "classification":
        errors.append(FieldError("task_type", "the plain pytorch trainer only does classification"))
    for key, value in overrides.items():
        if key not in PLAIN_PARAMS:
            errors.append(FieldError(f"config.{key}", f"unknown key; valid: {', '.join(PLAIN_PARAMS)}"))
            continue
        kind, low, high, _ = PLAIN_PARAMS[key]
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (kind is int and not isinstance(value, int)):
            expected = "an integer" if kind is int else "a number"
            errors.append(FieldError(f"config.{key}", f"must be {expected}"))
        elif not low <= value <= high:
            errors.append(FieldError(f"config.{key}", f"must be between {low:g} and {high:g}"))
    if errors:
        raise invalid_fields(errors)
    values = {key: overrides.get(key, default) for key, (_, _, _, default) in PLAIN_PARAMS.items()}
    header = "# Trainyard resolved training config: framework=pytorch task=classification\n"
    return ResolvedConfig(
        values=values,
        yaml=header + yaml.safe_dump(values, sort_keys=False),
        cli_preview=f"CONFIG={shlex.quote(json.dumps(values))} python {PLAIN_SCRIPT}",
    )


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


@dataclass(frozen=True)
class ValidJob:
    """A job request that passed every check, with what the checks derived from it."""

    config: ResolvedConfig
    dataset: Path | None


def check_model(body: schemas.JobCreate) -> None:
    """Ultralytics models come from the catalog; a framework-free trainer builds its own network."""
    if body.framework == "ultralytics":
        model_yaml(body.model_name, body.task_type)


def resolve_job_config(
    body: schemas.JobCreate, model: str | None = None, data: str | None = None
) -> ResolvedConfig:
    """The job's resolved config; `model` and `data` only fill the CLI preview."""
    if body.framework == "pytorch":
        return resolve_plain_config(body.task_type, body.config)
    return resolve_config(
        body.framework, body.task_type, overrides=body.config, mode="developer", model=model, data=data
    )


def check_dataset_given(body: schemas.JobCreate) -> None:
    if body.dataset_id is not None:
        raise invalid("dataset_id", "registered datasets are not available yet; use dataset_path")
    if body.dataset_version_id is not None and body.dataset_path is not None:
        raise invalid("dataset_version_id", "give dataset_path or dataset_version_id, not both")
    # The plain pytorch example generates its data, so it may go without one.
    if body.dataset_path is None and body.dataset_version_id is None and body.framework != "pytorch":
        raise invalid("dataset_path", "required (or dataset_version_id)")


def check_dataset(
    session: Session, body: schemas.JobCreate, principal: Principal | None = None
) -> Path | None:
    """The folder `dataset_path` names, checked. One the key may not see is a 404 before anything is said
    about it (whether it exists, what it holds), as for a folder of a project that does not exist."""
    check_dataset_given(body)
    if body.dataset_path is None:
        return None
    path = locate_dataset_path(body.dataset_path)
    if not path_visible(session, principal, path):
        raise missing("dataset_path", f"folder {body.dataset_path!r} does not exist")
    return check_dataset_folder(path, body.dataset_path, body.task_type)


def validate(session: Session, body: schemas.JobCreate, principal: Principal | None = None) -> ValidJob:
    """Every check a job request must pass before anything is written (first failure raises)."""
    dataset = check_dataset(session, body, principal)
    check_model(body)
    config = resolve_job_config(body)
    return ValidJob(config=config, dataset=dataset)


def job_name_taken(session: Session, project: str, name: str) -> bool:
    """Whether `project` already has a job with this name (or one with the same slug)."""
    stmt = select(TrainingJob.id).join(Project).where(Project.name == project)
    stmt = stmt.where(TrainingJob.slug == slugify(name))
    return session.scalar(stmt.limit(1)) is not None


def create_job(session: Session, body: schemas.JobCreate, principal: Principal | None = None) -> TrainingJob:
    """Validate everything, write the job and its first event, and queue it once committed."""
    valid = validate(session, body, principal)
    resolved, dataset = valid.config, valid.dataset
    start = resolve_starting_point(session, body, principal)
    project = get_or_create_project(session, body.project)
    version = None
    if body.dataset_version_id is not None:
        # Marks the version `training`; the worker converts it to YOLO into this folder (cached).
        version = claim_for_job(session, body.dataset_version_id, project, body.task_type, principal)
        dataset = yolo_dir(version, DiceTask(body.task_type))
    job = TrainingJob(
        project=project,
        name=body.name,
        slug=slugify(body.name),
        framework=body.framework,
        task_type=body.task_type,
        model_name=body.model_name,
        dataset_path=str(dataset) if dataset is not None else None,
        dataset_version_id=version.id if version is not None else None,
        dataset_manifest_sha256=version.manifest_sha256 if version is not None else None,
        config=resolved.values,
        checkpoint_path=start.weights_key if start else None,
        checkpoint_model_id=start.model_id if start else None,
        parent_job_id=start.job_id if start else None,
        status=JobStatus.QUEUED,
        attempt=1,
        last_event_seq=0,
        total_epochs=int(resolved.values.get("epochs", 0)),
    )
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError as exc:
        reason = f"a job named {body.name!r} (or with the same slug) exists in this project"
        raise AppError(409, ErrorCode.CONFLICT, f"name: {reason}", [FieldError("name", reason)]) from exc
    job.callback_token_hash = token_hash(job_token(job.id, job.attempt))
    record_event(session, job, EventType.STATUS, {"status": JobStatus.QUEUED, "attempt": job.attempt})
    dispatch(session, job)
    return job


def get_job(session: Session, job_id: int) -> TrainingJob:
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise not_found("training job", job_id)
    return job


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
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(TrainingJob.id.desc()).limit(limit).offset(offset)).unique()
    return list(rows), total


def to_read(job: TrainingJob) -> schemas.JobRead:
    return schemas.JobRead(
        id=job.id,
        name=job.name,
        project=job.project.name,
        framework=job.framework,
        task_type=job.task_type,
        model_name=job.model_name,
        dataset_path=job.dataset_path,
        dataset_id=job.dataset_id,
        dataset_version_id=job.dataset_version_id,
        dataset_manifest_sha256=job.dataset_manifest_sha256,
        checkpoint_model_id=job.checkpoint_model_id,
        parent_job_id=job.parent_job_id,
        status=job.status,
        attempt=job.attempt,
        current_epoch=job.current_epoch,
        total_epochs=job.total_epochs,
        config=job.config,
        results=schemas.TrainingResults(**job.results) if job.results else None,
        checkpoints={"best": job.best_checkpoint, "last": job.last_checkpoint},
        error_code=job.error_code,
        error_message=job.error_message,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
    )


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
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(TrainingLog.timestamp, TrainingLog.id).limit(limit).offset(offset))
    logs = [
        schemas.LogRead(
            id=r.id, level=r.level, message=r.message, timestamp=r.timestamp, source=r.source, metadata=r.meta
        )
        for r in rows
    ]
    return schemas.LogPage(logs=logs, total=total, has_more=offset + len(logs) < total)


def _events_of_type(session: Session, job_id: int, type: EventType) -> list[JobEvent]:
    stmt = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == type).order_by(JobEvent.seq)
    return list(session.scalars(stmt))


def metrics_history(session: Session, job_id: int) -> schemas.MetricsHistory:
    get_job(session, job_id)
    # A resumed attempt may report an epoch again; the latest report of an epoch wins.
    by_epoch: dict[int, schemas.EpochMetrics] = {}
    for event in _events_of_type(session, job_id, EventType.METRICS):
        epoch = int(event.data["epoch"])
        by_epoch[epoch] = schemas.EpochMetrics(
            epoch=epoch, train_metrics=event.data.get("train", {}), val_metrics=event.data.get("val", {})
        )
    return schemas.MetricsHistory(job_id=job_id, epochs=[by_epoch[e] for e in sorted(by_epoch)])


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
        for e in _events_of_type(session, job_id, EventType.CHECKPOINT)
    ]
    return schemas.CheckpointList(
        job_id=job_id, best=job.best_checkpoint, last=job.last_checkpoint, history=history
    )
