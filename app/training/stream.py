"""SSE for a job: replay what the client missed from the database, then follow it live.

Pub/sub is only a doorbell (app/core/doorbell.py): a message on the job's channel wakes the stream,
which then reads what follows the last seq sent from the database.
"""

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from app.core import doorbell
from app.core.db import Database
from app.core.events import EventType, envelope, events_after
from app.core.jobs import TERMINAL
from app.core.redis import get_async_redis, job_channel

log = logging.getLogger("app.backend")


def is_terminal(event: dict[str, Any]) -> bool:
    return event["type"] == EventType.STATUS and event["data"].get("status") in TERMINAL


class JobEventStream:
    def __init__(self, db: Database, job_id: int, after: int, is_disconnected: Callable[[], Any]) -> None:
        self.db = db
        self.job_id = job_id
        self.last_seq = after
        self.is_disconnected = is_disconnected

    def _load(self) -> list[dict[str, Any]]:
        with self.db.session() as session:
            return [envelope(e) for e in events_after(session, self.job_id, self.last_seq)]

    async def _catch_up(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            events = await anyio.to_thread.run_sync(self._load)
            for event in events:
                if event["seq"] == self.last_seq + 1:
                    self.last_seq = event["seq"]
                    yield event
            if len(events) < 1000:
                return

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every event after `after`, exactly once and in order, until the terminal status event."""
        redis = get_async_redis()
        pubsub = redis.pubsub()
        channel = job_channel(self.job_id)
        try:
            # Subscribe before the replay, so nothing published in between is missed.
            subscribed = await doorbell.subscribe(pubsub, channel)
            if not subscribed:
                log.warning("SSE for job %s: Redis unavailable, polling the database", self.job_id)
            async for event in self._catch_up():
                yield event
                if is_terminal(event):
                    return
            while not await self.is_disconnected():
                subscribed = await doorbell.wait(pubsub, channel, subscribed)
                async for event in self._catch_up():
                    yield event
                    if is_terminal(event):
                        return
        finally:
            await doorbell.close(pubsub, redis)


def sse_message(event: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(event["seq"]), "event": event["type"], "data": json.dumps(event)}
