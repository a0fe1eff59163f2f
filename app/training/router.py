from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse

from app.core.deps import DatabaseDep, SessionDep
from app.core.jobs import JobStatus
from app.core.settings import get_settings
from app.observability.metrics import SSE_CLIENTS
from app.training import lifecycle, schemas, service
from app.training.stream import JobEventStream, sse_message

router = APIRouter(prefix="/api/v1/training", tags=["training"])


@router.post("/jobs", status_code=201, response_model=schemas.JobRead)
def create_job(body: schemas.JobCreate, session: SessionDep) -> schemas.JobRead:
    """Submit a training job; it is queued once the request commits."""
    return service.to_read(service.create_job(session, body))


@router.get("/jobs", response_model=schemas.JobPage)
def list_jobs(
    session: SessionDep,
    project: str | None = None,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.JobPage:
    jobs, total = service.list_jobs(session, project, status, limit, offset)
    return schemas.JobPage(items=[service.to_read(j) for j in jobs], total=total, limit=limit, offset=offset)


@router.get("/jobs/{job_id}", response_model=schemas.JobRead)
def get_job(job_id: int, session: SessionDep) -> schemas.JobRead:
    return service.to_read(service.get_job(session, job_id))


@router.post("/jobs/{job_id}/stop", response_model=schemas.JobRead)
def stop_job(job_id: int, session: SessionDep) -> schemas.JobRead:
    """Stop a running job after its current step (resumable); a queued job is cancelled."""
    return service.to_read(lifecycle.stop(session, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=schemas.JobRead)
def cancel_job(job_id: int, session: SessionDep) -> schemas.JobRead:
    """Cancel a queued job: it never starts."""
    return service.to_read(lifecycle.cancel(session, job_id))


@router.post("/jobs/{job_id}/resume", response_model=schemas.JobRead)
def resume_job(job_id: int, session: SessionDep) -> schemas.JobRead:
    """Continue a stopped or failed job from its last checkpoint, as a new attempt."""
    return service.to_read(lifecycle.resume(session, job_id))


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse)
def job_events(
    job_id: int,
    request: Request,
    db: DatabaseDep,
    session: SessionDep,
    after: Annotated[int | None, Query(ge=0, description="replay events after this seq")] = None,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> EventSourceResponse:
    """Server-sent events: replay after `Last-Event-ID` (or `?after=`), then live, until the job ends."""
    service.get_job(session, job_id)
    start = last_event_id if last_event_id is not None else (after or 0)
    stream = JobEventStream(db, job_id, start, request.is_disconnected)

    async def messages() -> AsyncIterator[dict[str, Any]]:
        SSE_CLIENTS.inc()
        try:
            async for event in stream.events():
                yield sse_message(event)
        finally:
            SSE_CLIENTS.dec()

    return EventSourceResponse(messages(), ping=get_settings().sse_ping_seconds)


@router.get("/jobs/{job_id}/logs", response_model=schemas.LogPage)
def job_logs(
    job_id: int,
    session: SessionDep,
    level: Annotated[str | None, Query(pattern="^(?i)(debug|info|warning|error)$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.LogPage:
    return service.query_logs(session, job_id, level, since, until, limit, offset)


@router.get("/jobs/{job_id}/metrics", response_model=schemas.MetricsHistory)
def job_metrics(job_id: int, session: SessionDep) -> schemas.MetricsHistory:
    return service.metrics_history(session, job_id)


@router.get("/jobs/{job_id}/checkpoints", response_model=schemas.CheckpointList)
def job_checkpoints(job_id: int, session: SessionDep) -> schemas.CheckpointList:
    return service.checkpoints(session, job_id)
