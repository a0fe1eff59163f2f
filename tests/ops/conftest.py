"""Ops tests talk to their own Redis database (13 by default), flushed before and after each test,
and run real processes (API, workers, Flower, honcho) against a migrated SQLite file."""

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from app.core import migrate
from app.core.workers import live_workers

OPS_REDIS_URL = os.environ.get("TRAINYARD_TEST_OPS_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def ops_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(OPS_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def process_env(tmp_path: Path, ops_redis: redis.Redis) -> dict[str, str]:
    """The environment of a stack under test: its own data dir, a migrated SQLite file, Redis db 13."""
    data = tmp_path / "data"
    database_url = f"sqlite:///{data / 'trainyard.db'}"
    migrate.upgrade(database_url)
    return {
        "TRAINYARD_DATA_DIR": str(data),
        "DATABASE_URL": database_url,
        "REDIS_URL": OPS_REDIS_URL,
        "TRAINYARD_SECRET_KEY": "ops-test-secret",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def worker_name() -> str:
    return f"ops-{uuid.uuid4().hex[:8]}"


def worker_is_live(client: redis.Redis, name: str) -> Callable[[], bool]:
    return lambda: any(w.get("id") == name for w in live_workers(client))
