import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse

from app.core.auth import Principal, PrincipalDep, read_only, stream_token_ok
from app.core.db import Database
from app.core.deps import DatabaseDep, SessionDep
from app.core.inputs import Id, Moment, Offset
from app.core.jobs import JobStatus
from app.core.pagination import PageDep
from app.core.ratelimit import check_rate
from app.core.security import stream_token
from app.core.settings import get_settings
from app.observability.metrics import SSE_CLIENTS
from app.training import schemas, service, state
from app.training.stream import JobEventStream, sse_message

router = APIRouter(prefix="/api/v1/training", tags=["training"])


@router.post("/jobs", status_code=201, response_model=schemas.JobRead)
async def create_job(body: schemas.JobCreate, db: DatabaseDep, principal: PrincipalDep) -> schemas.JobRead:
    """Submit a training job; it is queued once the request commits. Rate limited per API key (429)."""
    # Async with one worker thread for the whole submission: a request-scoped session would cost two more
    # thread hops (its opening and its commit), each a handover of the GIL between busy threads.
    return await run_in_threadpool(submit_job, db, body, principal)


def submit_job(db: Database, body: schemas.JobCreate, principal: Principal) -> schemas.JobRead:
    """The rate limit, every check, and the job with its first event in one transaction, committed before
    the 201 (the job is sent to the queue and its event published only once it is)."""
    check_rate("submit", str(principal.key_id), get_settings().submit_rate)
    with db.session() as session:
        job = service.create_job(session, body, principal)
    # Read back after the commit: on SQLite no other writer waits while the answer is built.
    return service.to_read(job)


@router.get("/jobs", response_model=schemas.JobPage)
def list_jobs(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    project: str | None = None,
    status: JobStatus | None = None,
) -> schemas.JobPage:
    jobs, total = service.list_jobs(session, project, status, page.limit, page.offset, principal)
    return schemas.JobPage(
        items=service.to_reads_with_queue(session, jobs), total=total, limit=page.limit, offset=page.offset
    )


@router.get("/jobs/{job_id}", response_model=schemas.JobRead)
def get_job(job_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.JobRead:
    return service.to_read_with_queue(session, service.get_job(session, job_id, principal))


@router.post("/jobs/{job_id}/stop", response_model=schemas.JobRead)
def stop_job(job_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.JobRead:
    """Stop a running job after its current step (resumable); a queued job is cancelled."""
    return service.to_read(state.stop_job(session, job_id, principal))


@router.post("/jobs/{job_id}/cancel", response_model=schemas.JobRead)
def cancel_job(job_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.JobRead:
    """Cancel a queued job: it never starts."""
    return service.to_read(state.cancel_job(session, job_id, principal))


@router.post("/jobs/{job_id}/resume", response_model=schemas.JobRead)
def resume_job(job_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.JobRead:
    """Continue a stopped or failed job from its last checkpoint, as a new attempt."""
    return service.to_read(state.resume_job(session, job_id, principal))


@router.post("/jobs/{job_id}/stream-token", response_model=schemas.StreamTokenRead)
@read_only
def create_stream_token(job_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.StreamTokenRead:
    """A short-lived token for `GET .../events?token=...`, for clients that cannot send headers
    (a browser's EventSource). Bound to this job and to the calling key."""
    service.get_job(session, job_id, principal)
    expires = int(time.time()) + get_settings().stream_token_seconds
    token = stream_token(job_id, principal.key_id, expires)
    return schemas.StreamTokenRead(
        token=token,
        expires_at=datetime.fromtimestamp(expires, UTC),
        events_url=f"{router.prefix}/jobs/{job_id}/events?token={token}",
    )


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse)
@stream_token_ok
def job_events(
    job_id: Id,
    request: Request,
    db: DatabaseDep,
    session: SessionDep,
    principal: PrincipalDep,
    token: Annotated[
        str | None, Query(description="a stream token, instead of the Authorization header")
    ] = None,
    after: Annotated[Offset | None, Query(description="replay events after this seq")] = None,
    last_event_id: Annotated[Offset | None, Header()] = None,
) -> EventSourceResponse:
    """Server-sent events: replay after `Last-Event-ID` (or `?after=`), then live, until the job ends."""
    service.get_job(session, job_id, principal)
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
    job_id: Id,
    session: SessionDep,
    principal: PrincipalDep,
    level: Annotated[str | None, Query(pattern="^(?i)(debug|info|warning|error)$")] = None,
    since: Moment | None = None,
    until: Moment | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[Offset, Query()] = 0,
) -> schemas.LogPage:
    service.get_job(session, job_id, principal)
    return service.query_logs(session, job_id, level, since, until, limit, offset)


@router.get("/jobs/{job_id}/metrics", response_model=schemas.MetricsHistory)
def job_metrics(job_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.MetricsHistory:
    service.get_job(session, job_id, principal)
    return service.metrics_history(session, job_id)


@router.get("/jobs/{job_id}/checkpoints", response_model=schemas.CheckpointList)
def job_checkpoints(job_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.CheckpointList:
    service.get_job(session, job_id, principal)
    return service.checkpoints(session, job_id)
