"""Ops tests talk to their own Redis database (13 by default), flushed before and after each test."""

import os
from collections.abc import Iterator

import pytest
import redis

OPS_REDIS_URL = os.environ.get("TRAINYARD_TEST_OPS_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def ops_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(OPS_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
