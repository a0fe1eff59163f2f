"""The worker registry in Redis.

Each worker refreshes a presence key with a TTL (an expired key means offline) and its entry in a
registry hash (kept, so a worker gone silent still shows, as offline, with its last heartbeat).
"""

import json
import time
from typing import Any

import redis

PREFIX = "trainyard:worker:"
REGISTRY = "trainyard:workers"
DRAINING = "trainyard:workers:draining"
PRESENCE_TTL_SECONDS = 30


def announce(client: redis.Redis, worker_id: str, info: dict[str, Any]) -> None:
    # `announced_at` (epoch seconds) tells how old each worker's heartbeat is.
    entry = json.dumps({**info, "announced_at": time.time()})
    pipe = client.pipeline()
    pipe.set(PREFIX + worker_id, entry, ex=PRESENCE_TTL_SECONDS)
    pipe.hset(REGISTRY, worker_id, entry)
    pipe.execute()


def rejoin(client: redis.Redis, worker_id: str) -> None:
    """A worker process that starts consumes its queues: a drain ended with the process it drained,
    after a crash as after a clean shutdown (`withdraw`), so the registry must not show it draining."""
    client.srem(DRAINING, worker_id)


def withdraw(client: redis.Redis, worker_id: str) -> None:
    """A worker shutting down cleanly goes offline at once (its registry entry stays)."""
    client.delete(PREFIX + worker_id)
    client.srem(DRAINING, worker_id)


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    workers = []
    for key in client.scan_iter(match=PREFIX + "*", count=100):
        raw = client.get(key)
        if raw is not None:
            workers.append(json.loads(raw))
    return sorted(workers, key=lambda w: str(w.get("id")))


def all_workers(client: redis.Redis) -> list[dict[str, Any]]:
    """Every worker ever registered, with `status` online|draining|offline and `heartbeat_age_seconds`."""
    live = {str(w["id"]) for w in live_workers(client)}
    draining = {d.decode() if isinstance(d, bytes) else str(d) for d in client.smembers(DRAINING)}
    now = time.time()
    workers = []
    for raw in client.hvals(REGISTRY):
        info = json.loads(raw)
        worker_id = str(info.get("id"))
        online = worker_id in live
        info["status"] = ("draining" if worker_id in draining else "online") if online else "offline"
        info["heartbeat_age_seconds"] = round(now - float(info.get("announced_at", now)), 1)
        workers.append(info)
    return sorted(workers, key=lambda w: str(w.get("id")))


def is_draining(client: redis.Redis, worker_id: str) -> bool:
    return bool(client.sismember(DRAINING, worker_id))


def mark_draining(client: redis.Redis, worker_id: str) -> None:
    client.sadd(DRAINING, worker_id)
