"""Redis pub/sub as a doorbell for SSE streams: a message only wakes the stream, which then re-reads the
truth (the database, or an inference job's keys); with no message for POLL_SECONDS it reads anyway. So a
lost publish, a Redis restart, or another installation sharing the server (pub/sub channels ignore
database numbers) delays an event but never drops, repeats or invents one."""

from typing import Any

import anyio
from redis.exceptions import RedisError

POLL_SECONDS = 2.0


async def subscribe(pubsub: Any, channel: str) -> bool:
    """False when Redis is unavailable (the stream polls meanwhile)."""
    try:
        await pubsub.subscribe(channel)
        return True
    except (RedisError, OSError):
        return False


async def ring(pubsub: Any) -> bool:
    """Wait for a publish or POLL_SECONDS; drain a burst (one read for it). False: Redis is gone."""
    try:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
        while message is not None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
        return True
    except (RedisError, OSError):
        return False


async def wait(pubsub: Any, channel: str, subscribed: bool) -> bool:
    """The wait between two reads: the doorbell when subscribed, else a poll and a new subscription.
    Returns whether the stream is subscribed now."""
    if subscribed:
        return await ring(pubsub)
    await anyio.sleep(POLL_SECONDS)
    return await subscribe(pubsub, channel)


async def close(pubsub: Any, client: Any) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await pubsub.aclose()
            await client.aclose()
        except (RedisError, OSError):
            pass
