"""SSE for a job: replay what the client missed from the database, then follow it live.

Pub/sub is only a doorbell: a message on the job's channel wakes the stream, which then reads what
follows the last seq sent from the database. When no message comes for a while the database is
polled anyway, so a lost publish, a Redis restart, or another installation sharing the Redis server
(pub/sub channels ignore database numbers) delays an event but never drops, repeats or invents one.
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
                if subscribed:
                    subscribed = await self._wait_for_doorbell(pubsub)
                else:
                    await anyio.sleep(POLL_SECONDS)
                    subscribed = await self._resubscribe(pubsub)
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

    async def _wait_for_doorbell(self, pubsub: Any) -> bool:
        """Wait for a publish or POLL_SECONDS; drain a burst (one query for it). False: Redis is gone."""
        try:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
            while message is not None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
            return True
        except (RedisError, OSError):
            return False

    async def _resubscribe(self, pubsub: Any) -> bool:
        try:
            await pubsub.subscribe(job_channel(self.job_id))
            return True
        except (RedisError, OSError):
            return False


def sse_message(event: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(event["seq"]), "event": event["type"], "data": json.dumps(event)}
