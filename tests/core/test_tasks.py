"""The Redis entry the API queues an inference request with, held to what Celery's own send_task pushes:
a worker must read the same task, arguments and delivery fields from either."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu.transport.virtual.base import Message

from app.core.tasks import TaskName, get_celery_client, queue_entry, send_task
from tests.conftest import REDIS_URL, clear_caches

QUEUE = "test-queue-entry"


@pytest.fixture
def celery_redis(monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis) -> Iterator[redis.Redis]:
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    clear_caches()
    redis_client.delete(QUEUE)
    yield redis_client
    redis_client.delete(QUEUE)
    clear_caches()


def delivered(raw: bytes) -> tuple[dict[str, Any], Any]:
    """The envelope as pushed, and the task message the worker's consumer decodes from it."""
    envelope = json.loads(raw)
    channel = get_celery_client().connection_for_read().default_channel
    return envelope, Message(dict(envelope), channel=channel).decode()


def test_queue_entry_is_what_send_task_pushes(celery_redis: redis.Redis) -> None:
    payload = {"request_id": "r1", "images": [{"name": "a.jpg", "blob": "k"}], "params": {"conf": 0.25}}
    send_task(TaskName.INFER, [payload], QUEUE)
    theirs, their_body = delivered(celery_redis.rpop(QUEUE))  # type: ignore[arg-type]

    key, entry = queue_entry(TaskName.INFER, [payload], QUEUE, argsrepr="r1")
    assert key == QUEUE
    ours, our_body = delivered(entry)

    assert (
        our_body
        == their_body
        == [[payload], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    )
    assert ours["headers"]["task"] == TaskName.INFER
    assert ours["headers"]["argsrepr"] == "r1"
    assert ours["headers"]["id"] == ours["properties"]["correlation_id"] != theirs["headers"]["id"]
    assert set(ours["headers"]) == set(theirs["headers"])
    assert set(ours["properties"]) == set(theirs["properties"])
    for field in ("content-type", "content-encoding"):
        assert ours[field] == theirs[field]
    for field in ("delivery_info", "priority", "body_encoding", "delivery_mode"):
        assert ours["properties"][field] == theirs["properties"][field]
