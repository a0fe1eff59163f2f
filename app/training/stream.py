"""SSE for a job: replay what the client missed from the database, then follow it live.

Live events come from the process's feed of the job (app/core/fanout.py): one database read per
new event for all the job's clients; whatever the feed skipped for this client is read here.

The stream carries every attempt of the job and ends only after the job's final status event: a
terminal status that is the job's current status and has no later status event (an attempt's `stopped`
followed by a resume is not the end). A stream opened after that event re-sends it and ends at once,
so a client reconnecting to a finished job (a browser EventSource does) learns that it is over.
"""

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from app.core import fanout
from app.core.db import Database
from app.core.events import EventType, envelope, events_after, last_seq
from app.core.jobs import TERMINAL
from app.core.redis import job_channel
from app.models import JobEvent, TrainingJob

log = logging.getLogger("app.backend")

# Built once, like the reads of app/core/events.py: a feed reads after every event.
_STATUS = select(TrainingJob.status).where(TrainingJob.id == bindparam("job_id"))
_LAST_STATUS_SEQ = select(func.max(JobEvent.seq)).where(
    JobEvent.job_id == bindparam("job_id"), JobEvent.type == EventType.STATUS
)


@dataclass
class Batch:
    events: list[dict[str, Any]]
    final_seq: int | None  # seq of the job's final status event, None while the job may go on


class JobEventStream:
    def __init__(self, db: Database, job_id: int, after: int, is_disconnected: Callable[[], Any]) -> None:
        self.db = db
        self.job_id = job_id
        self.last_seq = after
        self.is_disconnected = is_disconnected
        self.finished = False

    def _final_seq(self, connection: Connection) -> int | None:
        """The seq of the job's final status event: its last status event, once its status is terminal.
        The status is read first: if a resume commits after that read, its `queued` event is newer
        than the stopped one, which therefore is not taken for the end."""
        status = connection.scalar(_STATUS, {"job_id": self.job_id})
        if status not in TERMINAL:
            return None
        last: int | None = connection.scalar(_LAST_STATUS_SEQ, {"job_id": self.job_id})
        return last

    def _load(self, connection: Connection, after: int) -> Batch:
        final = self._final_seq(connection)
        return Batch([envelope(e) for e in events_after(connection, self.job_id, after)], final)

    async def _read(self, after: int) -> Batch:
        return await self.db.read(lambda connection: self._load(connection, after))

    async def _last_seq(self) -> int:
        return await self.db.read(lambda connection: last_seq(connection, self.job_id))

    def _take(self, batch: Batch) -> Iterator[dict[str, Any]]:
        """The batch's events that follow the last seq sent, in order; stops after the final status event."""
        for event in batch.events:
            if event["seq"] == self.last_seq + 1:
                self.last_seq = event["seq"]
                yield event
                if event["seq"] == batch.final_seq:
                    self.finished = True
                    return
        # The final event may have gone out in an earlier read that saw the job's status just
        # before it ended; this read, which saw the end, has nothing new to send.
        if batch.final_seq is not None and self.last_seq >= batch.final_seq:
            self.finished = True

    async def _catch_up(self) -> AsyncIterator[dict[str, Any]]:
        """What follows the last seq sent, read from the database."""
        while True:
            batch = await self._read(self.last_seq)
            for event in self._take(batch):
                yield event
            if self.finished or len(batch.events) < 1000:
                return

    async def _live(self, batches: list[Batch]) -> AsyncIterator[dict[str, Any]]:
        """What the feed delivered, minus what this client has; a gap is read from the database."""
        for batch in batches:
            # The first seq the batch brings (an empty batch only says where the job ended).
            first = batch.events[0]["seq"] if batch.events else (batch.final_seq or 0) + 1
            if first > self.last_seq + 1:
                async for event in self._catch_up():
                    yield event
            for event in self._take(batch):
                yield event
            if self.finished:
                return

    def _final_event(self, connection: Connection) -> dict[str, Any] | None:
        """The job's final status event, or None while the job may still change."""
        final = self._final_seq(connection)
        rows = events_after(connection, self.job_id, final - 1, limit=1) if final is not None else []
        return envelope(rows[0]) if rows else None

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every event after `after`, exactly once and in order, until the job's final status event."""
        if self.last_seq > 0:
            final = await self.db.read(self._final_event)
            if final is not None and final["seq"] <= self.last_seq:
                yield final
                return
        hub = fanout.get_hub()
        # Follow before the replay, so nothing recorded in between is missed.
        async with hub.follow(job_channel(self.job_id), self.db, self._last_seq, self._read) as feed:
            async for event in self._catch_up():
                yield event
            while not self.finished and not await self.is_disconnected():
                delivered = await feed.receive()
                if delivered is None:
                    log.info("SSE for job %s: client too slow, dropped at seq %s", self.job_id, self.last_seq)
                    return
                async for event in self._live(delivered):
                    yield event


def sse_message(event: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(event["seq"]), "event": event["type"], "data": json.dumps(event)}
