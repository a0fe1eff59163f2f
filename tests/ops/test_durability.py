"""`trainyard serve`'s bundled Redis keeps a queued job's Celery message across a restart (AOF)."""

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.cli.bundled_redis import BundledRedis
from app.core.tasks import Queue, TaskName, get_celery_client, send_task
from tests.conftest import clear_caches

pytestmark = pytest.mark.integration


@pytest.fixture
def bundled_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Settings as `trainyard serve` leaves them: no REDIS_URL, the bundled socket in the data dir."""
    monkeypatch.setenv("TRAINYARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    clear_caches()
    yield tmp_path / "data" / "redis" / "redis.sock"
    get_celery_client().close()
    clear_caches()


def test_a_queued_training_message_survives_a_restart_of_the_bundled_redis(bundled_env: Path) -> None:
    server = BundledRedis(bundled_env)
    server.start()
    try:
        send_task(TaskName.TRAIN, [42, 1], Queue.TRAINING)
        get_celery_client().close()  # drop pooled connections to the server about to stop
    finally:
        server.stop()
    assert server.process is not None and server.process.returncode is not None
    folder = bundled_env.parent
    assert (folder / "appendonlydir").is_dir() or (folder / "appendonly.aof").is_file()

    restarted = BundledRedis(bundled_env)
    restarted.start()
    try:
        client = redis.Redis.from_url(restarted.url)
        messages = client.lrange(Queue.TRAINING, 0, -1)
        assert len(messages) == 1
        message = json.loads(messages[0])
        assert message["headers"]["task"] == TaskName.TRAIN
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        assert args == [42, 1]
        assert message["properties"]["delivery_info"]["routing_key"] == Queue.TRAINING
    finally:
        restarted.stop()
