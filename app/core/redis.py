"""Redis clients. Redis is the broker, the lock service and the event bus — never the truth."""

from functools import lru_cache

import redis
import redis.asyncio as aioredis

from app.core.settings import get_settings


@lru_cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().resolved_redis_url, health_check_interval=30)


def get_async_redis() -> aioredis.Redis:
    """A fresh asyncio client; callers close it (it is bound to its event loop)."""
    return aioredis.Redis.from_url(get_settings().resolved_redis_url)


def channel_prefix() -> str:
    """Pub/sub ignores database numbers: every channel carries this installation's number, so two
    installations on one Redis server never hear each other."""
    return f"trainyard:{get_redis().get_connection_kwargs().get('db') or 0}:"


def job_channel(job_id: int) -> str:
    return f"{channel_prefix()}job:{job_id}:events"
