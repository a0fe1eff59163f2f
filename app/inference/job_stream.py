"""SSE for an inference job: a `progress` event whenever more chunks are answered, then one `status`
event with the final status, and the stream ends.

The worker's publish after each chunk is a doorbell only: the state is re-read from the job's keys
each time (and every POLL_SECONDS anyway), so a lost publish or a Redis hiccup delays an event but
never skips the end. Event ids count up from 1 in each stream; a client that reconnects gets the
current progress first.
"""

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from redis.exceptions import RedisError

from app.core.redis import get_async_redis
from app.inference import protocol
from app.inference.service import job_status

log = logging.getLogger("app.backend")

POLL_SECONDS = 2.0
FINAL = frozenset({"completed", "completed_with_errors", "failed"})
PROGRESS_FIELDS = ("id", "status", "images", "chunks", "chunks_done", "progress", "errors")


async def job_events(job_id: str, is_disconnected: Callable[[], Any]) -> AsyncIterator[dict[str, Any]]:
    redis = get_async_redis()
    pubsub = redis.pubsub()
    try:
        subscribed = await _subscribe(pubsub, job_id)  # before the first read: no chunk slips between
        seq, last_done = 0, -1
        while True:
            state = await anyio.to_thread.run_sync(job_status, job_id)
            if state["chunks_done"] != last_done:
                last_done = state["chunks_done"]
                seq += 1
                yield {"id": seq, "event": "progress", "data": {k: state[k] for k in PROGRESS_FIELDS}}
            if state["status"] in FINAL:
                yield {"id": seq + 1, "event": "status", "data": {k: state[k] for k in PROGRESS_FIELDS}}
                return
            if await is_disconnected():
                return
            if subscribed:
                subscribed = await _doorbell(pubsub)
            else:
                await anyio.sleep(POLL_SECONDS)
                subscribed = await _subscribe(pubsub, job_id)
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await pubsub.aclose()
                await redis.aclose()
            except (RedisError, OSError):
                pass


async def _subscribe(pubsub: Any, job_id: str) -> bool:
    try:
        await pubsub.subscribe(protocol.job_channel(job_id))
        return True
    except (RedisError, OSError):
        log.warning("SSE for inference job %s: Redis unavailable, polling", job_id)
        return False


async def _doorbell(pubsub: Any) -> bool:
    """Wait for a chunk's publish or POLL_SECONDS; drain a burst. False: Redis is gone."""
    try:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
        while message is not None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
        return True
    except (RedisError, OSError):
        return False
