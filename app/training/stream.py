"""SSE for a job: replay what the client missed from the database, then follow pub/sub live.

Pub/sub is only a doorbell. Every message is checked against the last seq sent; a gap is filled
from the database, and when no message comes for a while the database is polled anyway, so a lost
publish or a Redis restart delays an event but never drops or repeats one.
"""

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from redis.exceptions import RedisError

from app.core.db import Database
from app.core.events import EventType, envelope, events_after
from app.core.jobs import TERMINAL
from app.core.redis import get_async_redis, job_channel

log = logging.getLogger("app.backend")

POLL_SECONDS = 2.0


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
        subscribed = False
        try:
            try:
                await pubsub.subscribe(job_channel(self.job_id))
                subscribed = True
            except RedisError:
                log.warning("SSE for job %s: Redis unavailable, polling the database", self.job_id)
            # Subscribe before the replay, so nothing published in between is missed.
            async for event in self._catch_up():
                yield event
                if is_terminal(event):
                    return
            while not await self.is_disconnected():
                message = None
                if subscribed:
                    try:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
                    except (RedisError, OSError):
                        subscribed = False
                else:
                    await anyio.sleep(POLL_SECONDS)
                    subscribed = await self._resubscribe(pubsub)
                if message is not None:
                    event = json.loads(message["data"])
                    if event["seq"] <= self.last_seq:
                        continue
                    if event["seq"] == self.last_seq + 1:
                        self.last_seq = event["seq"]
                        yield event
                        if is_terminal(event):
                            return
                        continue
                # A gap, a quiet spell or a lost subscription: the database has the truth.
                async for event in self._catch_up():
                    yield event
                    if is_terminal(event):
                        return
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await pubsub.aclose()
                    await redis.aclose()
                except (RedisError, OSError):
                    pass

    async def _resubscribe(self, pubsub: Any) -> bool:
        try:
            await pubsub.subscribe(job_channel(self.job_id))
            return True
        except (RedisError, OSError):
            return False


def sse_message(event: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(event["seq"]), "event": event["type"], "data": json.dumps(event)}
