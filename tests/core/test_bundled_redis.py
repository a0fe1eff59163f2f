"""The embedded Redis of one-box installs: starts on a private socket, keeps queued work across restarts."""

from pathlib import Path

import pytest
import redis

from app.cli.bundled_redis import BundledRedis

pytestmark = pytest.mark.integration


def test_bundled_redis_keeps_data_across_a_restart(tmp_path: Path) -> None:
    server = BundledRedis(tmp_path / "redis" / "redis.sock")
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.rpush("training", "job-1")
    finally:
        server.stop()
    assert server.process is not None and server.process.returncode is not None
    restarted = BundledRedis(tmp_path / "redis" / "redis.sock")
    restarted.start()
    try:
        assert redis.Redis.from_url(restarted.url).lrange("training", 0, -1) == [b"job-1"]
    finally:
        restarted.stop()
