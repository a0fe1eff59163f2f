"""Live regions: one event stream per page, each event rendered into the fragment it updates.

The job page follows the job's event log through the stream code of the REST API (JobEventStream):
every event after `Last-Event-ID` (a reconnect) or `?after=` (the seq the page was rendered at), once
and in order. A stream that ends at a stopped or failed status keeps following, since a resume starts a
new attempt of the same job; a completed or cancelled job's stream ends with an `end` event, which
closes the browser's EventSource.
"""

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from jinja2 import Template
from sqlalchemy import select
from sse_starlette import EventSourceResponse

from app.core import fanout
from app.core.db import Database
from app.core.deps import DatabaseDep
from app.core.jobs import JobStatus
from app.core.redis import job_channel
from app.core.settings import get_settings
from app.models import TrainingJob
from app.observability.metrics import SSE_CLIENTS
from app.training.stream import JobEventStream
from app.web import views
from app.web.deps import UserDep, WebUser, templates
from app.web.jobs import visible_job

router = APIRouter(include_in_schema=False)
FINAL = frozenset({JobStatus.COMPLETED, JobStatus.CANCELLED})  # no resume can follow these


def fragment(name: str, **context: Any) -> str:
    template: Template = templates.get_template(name)
    return template.render(**context)


def render(event: dict[str, Any], user: WebUser, job_id: int) -> dict[str, Any] | None:
    """The SSE message that updates the page for one event (None: nothing on the page shows it)."""
    data, kind = event["data"], event["type"]
    if kind == "status":
        status, attempt = str(data.get("status")), int(data.get("attempt") or 1)
        html = fragment(
            "_job_head.html",
            user=user,
            job_id=job_id,
            status=status,
            attempt=attempt,
            actions=views.actions_for(status),
        )
    elif kind == "progress":
        html = fragment("_progress.html", progress=views.Progress.of(data))
    elif kind == "metrics":
        point = views.epoch_metrics(data)
        html = fragment("_metrics_row.html", point=point, json_point=json.dumps(point.model_dump()))
    elif kind == "log":
        html = fragment(
            "_log_line.html",
            level=str(data.get("level", "INFO")).upper(),
            ts=event["ts"][11:19],
            message=str(data.get("message", "")),
        )
    elif kind == "checkpoint":
        html = fragment("_checkpoint_row.html", job_id=job_id, data=data, ts=event["ts"][:19])
    elif kind == "error":
        html = fragment("_problem.html", detail=f"{data.get('code', 'error')}: {data.get('message', '')}")
    else:
        return None
    # One line per message: SSE data lines must not hold a bare newline of the fragment.
    return {"id": str(event["seq"]), "event": kind, "data": html.replace("\n", " ")}


def job_state(db: Database, job_id: int) -> tuple[str | None, int]:
    """The job's status and its newest event's seq."""
    with db.reading() as connection:
        row = connection.execute(
            select(TrainingJob.status, TrainingJob.last_event_seq).where(TrainingJob.id == job_id)
        ).one_or_none()
        return (row[0], row[1]) if row is not None else (None, 0)


async def follow(db: Database, job_id: int, after: int, request: Request) -> AsyncIterator[dict[str, Any]]:
    """Every event after `after`, once, across attempts, until the job can change no more."""
    last = after
    while not await request.is_disconnected():
        async for event in JobEventStream(db, job_id, last, request.is_disconnected).events():
            if event["seq"] > last:  # the stream repeats the final status to a client that had it
                last = event["seq"]
                yield event
        status, newest = await anyio.to_thread.run_sync(job_state, db, job_id)
        if status is None or status in FINAL:
            return
        # Stopped or failed: only a resume adds events (a new attempt); follow again once one has.
        while newest <= last and not await request.is_disconnected():
            await anyio.sleep(fanout.POLL_SECONDS)
            status, newest = await anyio.to_thread.run_sync(job_state, db, job_id)


@router.get("/jobs/{job_id:int}/live")
def job_live(
    job_id: int,
    request: Request,
    db: DatabaseDep,
    user: UserDep,
    after: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> EventSourceResponse:
    with db.read_session() as session:
        visible_job(session, user.principal, job_id)
    start = last_event_id if last_event_id is not None else after

    async def messages() -> AsyncIterator[dict[str, Any]]:
        SSE_CLIENTS.inc()
        try:
            async for event in follow(db, job_id, start, request):
                message = render(event, user, job_id)
                if message is not None:
                    yield message
            yield {"event": "end", "data": "end"}
        finally:
            SSE_CLIENTS.dec()

    return EventSourceResponse(messages(), ping=get_settings().sse_ping_seconds)


ROW_REFRESH_SECONDS = 0.25


def row_state(row: views.JobRow) -> tuple[object, ...]:
    """What a row shows that may change: a queued job's place and reason change with other jobs, without
    an event of its own, so they count too (the rows are read again at least every POLL_SECONDS)."""
    job = row.job
    return (job.status, job.attempt, job.current_epoch, job.last_event_seq, row.waiting)


@router.get("/jobs/live")
def jobs_live(
    request: Request,
    db: DatabaseDep,
    user: UserDep,
    ids: Annotated[str, Query(pattern=r"^\d+(,\d+){0,199}$")],
) -> EventSourceResponse:
    """The rows of the jobs shown on a list page, each re-rendered (as event `job-<id>`) when it changes."""
    job_ids = [int(i) for i in ids.split(",")]

    def load() -> list[tuple[int, tuple[object, ...], str]]:
        with db.read_session() as session:
            stmt = select(TrainingJob).where(
                TrainingJob.id.in_(job_ids), user.principal.project_filter(TrainingJob.project_id)
            )
            jobs = list(session.scalars(stmt).unique())
            rows = views.job_rows(session, jobs)
            return [(row.job.id, row_state(row), fragment("_job_row.html", row=row)) for row in rows]

    async def messages() -> AsyncIterator[dict[str, Any]]:
        # The rows are re-read (one query for the page's jobs, and only the events since the last read)
        # when an event of any of them is published, or after POLL_SECONDS without one (a lost publish).
        seen: dict[int, tuple[object, ...]] = {}
        async with fanout.get_hub().any_of([job_channel(i) for i in job_ids]) as bell:
            while not await request.is_disconnected():
                rings = bell.rings
                # The first read sends every row: whatever changed since the page was rendered.
                for job_id, state, html in await anyio.to_thread.run_sync(load):
                    if seen.get(job_id) != state:
                        yield {"event": f"job-{job_id}", "data": html.replace("\n", " ")}
                    seen[job_id] = state
                await bell.wait(rings, fanout.POLL_SECONDS)
                await anyio.sleep(ROW_REFRESH_SECONDS)  # a busy page: one read for a burst of events

    return EventSourceResponse(messages(), ping=get_settings().sse_ping_seconds)
