"""The process-wide objects of a worker, built once from settings and the worker's identity."""

from functools import lru_cache
from typing import TYPE_CHECKING

import redis

from app.core.db import get_database
from app.core.settings import get_settings
from app.core.storage import get_storage
from workers.identity import WorkerIdentity
from workers.lock import GpuLease
from workers.runner import TrainingRunner

if TYPE_CHECKING:
    from workers.inference.service import InferenceService

_identity: WorkerIdentity | None = None


def set_identity(identity: WorkerIdentity) -> None:
    global _identity
    _identity = identity


def get_identity() -> WorkerIdentity:
    if _identity is None:
        raise RuntimeError("worker identity is not set; start workers with `trainyard worker`")
    return _identity


@lru_cache
def get_lease() -> GpuLease:
    settings = get_settings()
    identity = get_identity()
    # The lock library blocks on Redis (BLPOP) for up to the lease TTL while another process holds the
    # GPU; redis-py's default 5 s socket timeout would turn every longer wait into an error.
    client = redis.Redis.from_url(settings.resolved_redis_url, socket_timeout=settings.lease_ttl_seconds + 10)
    return GpuLease(client, identity.device_key, identity.name, settings.lease_ttl_seconds)


@lru_cache
def get_runner() -> TrainingRunner:
    return TrainingRunner(
        get_database(),
        get_storage(),
        get_lease(),
        get_identity(),
        get_settings(),
        make_room=lambda: get_inference().before_training(),
    )


@lru_cache
def get_inference() -> "InferenceService":
    from workers.inference.service import InferenceService

    settings = get_settings()
    client = redis.Redis.from_url(settings.resolved_redis_url)
    return InferenceService(
        get_database(),
        get_storage(),
        get_lease(),
        get_identity(),
        settings,
        client,
        training_active=lambda: get_runner().current_job is not None,
    )
