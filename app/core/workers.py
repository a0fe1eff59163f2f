"""Worker presence in Redis: each worker refreshes a key with a TTL; an expired key means offline."""

import json
import time
from typing import Any

import redis

PREFIX = "trainyard:worker:"
PRESENCE_TTL_SECONDS = 30


def announce(client: redis.Redis, worker_id: str, info: dict[str, Any]) -> None:
    # `announced_at` (epoch seconds) lets /metrics report how old each worker's heartbeat is.
    client.set(PREFIX + worker_id, json.dumps({**info, "announced_at": time.time()}), ex=PRESENCE_TTL_SECONDS)


def withdraw(client: redis.Redis, worker_id: str) -> None:
    client.delete(PREFIX + worker_id)


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    workers = []
    for key in client.scan_iter(match=PREFIX + "*", count=100):
        raw = client.get(key)
        if raw is not None:
            workers.append(json.loads(raw))
    return sorted(workers, key=lambda w: str(w.get("id")))
