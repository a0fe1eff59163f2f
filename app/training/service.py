"""Training jobs as the API sees them: create, query, read back results."""

from datetime import datetime
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.configs.catalog import model_yaml
from app.configs.resolver import resolve_config
from app.core.errors import AppError, ErrorCode, FieldError, invalid, not_found
from app.core.events import EventType, record_event
from app.core.jobs import JobStatus
from app.core.naming import slugify
from app.models import JobEvent, Project, TrainingJob, TrainingLog
from app.models.base import as_utc
from app.training import schemas
from app.training.dataset_check import resolve_dataset_path
from app.training.recovery import dispatch


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
            raise invalid("project", "a project with a name that differs only in case or punctuation exists",
                          409) from exc
    return project


def create_job(session: Session, body: schemas.JobCreate) -> TrainingJob:
    """Validate everything, write the job and its first event, and queue it once committed."""
    if body.dataset_id is not None:
        raise invalid("dataset_id", "registered datasets are not available yet; use dataset_path")
    if body.dataset_path is None:
        raise invalid("dataset_path", "required")
    model_yaml(body.model_name, body.task_type)
    resolved = resolve_config(body.framework, body.task_type, overrides=body.config, mode="developer")
    dataset = resolve_dataset_path(body.dataset_path, body.task_type)

    project = get_or_create_project(session, body.project)
    job = TrainingJob(
        project=project,
        name=body.name,
        slug=slugify(body.name),
        framework=body.framework,
        task_type=body.task_type,
        model_name=body.model_name,
        dataset_path=str(dataset),
        config=resolved.values,
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
    record_event(session, job, EventType.STATUS, {"status": JobStatus.QUEUED, "attempt": job.attempt})
    dispatch(session, job)
    return job


def get_job(session: Session, job_id: int) -> TrainingJob:
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise not_found("training job", job_id)
    return job


def list_jobs(
    session: Session, project: str | None, status: JobStatus | None, limit: int, offset: int
) -> tuple[list[TrainingJob], int]:
    stmt = select(TrainingJob)
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
        schemas.LogRead(id=r.id, level=r.level, message=r.message, timestamp=r.timestamp, source=r.source,
                        metadata=r.meta)
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
    return schemas.CheckpointList(job_id=job_id, best=job.best_checkpoint, last=job.last_checkpoint, history=history)
