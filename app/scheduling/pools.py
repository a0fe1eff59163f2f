"""Worker pools: a worker belongs to one (`trainyard worker --pool`, by default its GPU model); a job may
require one. A requirement no live or known pool can meet is refused when the job is submitted."""

import re
from typing import Any

from app.core.errors import invalid
from app.core.settings import get_settings
from app.core.tasks import Queue, training_queue

POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,59}")


def known_pools(workers: list[dict[str, Any]]) -> set[str]:
    """Pools some worker announced (online or not, as long as the registry remembers it) or that the
    operator declared with TRAINYARD_POOLS (pools whose hosts are not up yet)."""
    declared = {p.strip() for p in get_settings().pools.split(",") if p.strip()}
    return declared | {str(w["pool"]) for w in workers if w.get("pool")}


def check_pool(pool: str, workers: list[dict[str, Any]]) -> str:
    """`pool`, or 422 naming the pools that exist."""
    if not POOL_NAME.fullmatch(pool):
        raise invalid("pool", "letters, digits, '-' and '_', at most 60")
    known = known_pools(workers)
    if pool not in known:
        have = ", ".join(sorted(known)) or "none yet"
        raise invalid("pool", f"no worker serves pool {pool!r} and none is declared (pools: {have})")
    return pool


def queue_names(workers: list[dict[str, Any]]) -> list[str]:
    """The Celery queues messages wait in: the fixed ones, and the training queue of each known pool."""
    return [*(q.value for q in Queue), *(training_queue(pool) for pool in sorted(known_pools(workers)))]


def serving(workers: list[dict[str, Any]], pool: str | None) -> list[dict[str, Any]]:
    """The online workers of the registry (app/core/workers.py) that run training jobs needing `pool`
    (None: any training worker, all of which consume the shared training queue)."""
    return [
        w
        for w in workers
        if w.get("status") == "online"
        and Queue.TRAINING in w.get("queues", [])
        and (pool is None or w.get("pool") == pool)
    ]
