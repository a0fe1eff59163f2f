"""One GPU, several worker processes: before a trainer starts on a GPU, the other live workers on that
GPU (same host, same device) drop their warm models, so a trainer and an inference cache never share its
memory. The lease keeps them from computing at once; this keeps them from both holding memory at once.

The messages go over each worker's control channel (app/inference/protocol.py), the one the API uses for
load and unload; the trainer waits a bounded time for the answers and starts anyway, with a warning,
when a worker stays silent (a worker that died still looks live until its presence key expires).
"""

import json
import logging
import time
import uuid
from functools import lru_cache

import redis

from app.core.settings import Settings
from app.core.workers import live_workers
from app.inference import protocol
from workers.identity import WorkerIdentity

log = logging.getLogger("operations.training")


def co_tenants(client: redis.Redis, identity: WorkerIdentity) -> list[str]:
    """The other live workers on this worker's GPU; a CPU worker shares its device with nobody."""
    if identity.device == "cpu":
        return []
    return [
        str(worker["id"])
        for worker in live_workers(client)
        if worker.get("id") != identity.name and worker.get("device_key") == identity.device_key
    ]


def evict_co_tenants(client: redis.Redis, identity: WorkerIdentity, timeout: float) -> dict[str, bool]:
    """Ask every co-tenant to drop its models; wait at most `timeout` s for all answers.

    Returns who answered and whether it succeeded; a worker missing from it did not answer in time.
    """
    workers = co_tenants(client, identity)
    if not workers:
        return {}
    reply_key = protocol.reply_key(f"evict-{uuid.uuid4().hex}")
    message = protocol.encode({"action": "evict", "by": identity.name, "reply_key": reply_key})
    pipe = client.pipeline()
    for worker in workers:
        pipe.rpush(protocol.control_key(worker), message)
    pipe.execute()
    answers: dict[str, bool] = {}
    deadline = time.monotonic() + timeout
    while len(answers) < len(workers) and (remaining := deadline - time.monotonic()) > 0:
        popped = client.blpop([reply_key], timeout=remaining)
        if popped is None:
            break
        reply = json.loads(popped[1])
        answers[str(reply["state"]["worker"])] = bool(reply.get("ok"))
    client.delete(reply_key)
    silent = sorted(set(workers) - set(answers))
    failed = sorted(w for w, ok in answers.items() if not ok)
    if silent or failed:
        log.warning(
            "GPU %s: training although workers did not drop their models (no answer: %s; failed: %s)",
            identity.device,
            ", ".join(silent) or "none",
            ", ".join(failed) or "none",
        )
    else:
        log.info("GPU %s: %s dropped their models for the trainer", identity.device, ", ".join(workers))
    return answers


def make_room_for_training(identity: WorkerIdentity, settings: Settings) -> None:
    """Called with the GPU's lease held, before the trainer starts: evict the GPU's other tenants.

    The wait stays well inside the lease's TTL (the heartbeat that renews it has not started yet), and
    a Redis failure here never fails the job: the lease still keeps the tenants from computing at once.
    """
    if identity.device == "cpu":
        return
    timeout = min(settings.gpu_evict_timeout_seconds, settings.lease_ttl_seconds / 3)
    try:
        evict_co_tenants(_client(settings.resolved_redis_url, timeout + 5), identity, timeout)
    except redis.RedisError:
        log.warning(
            "GPU %s: could not ask its other workers to drop their models", identity.device, exc_info=True
        )


@lru_cache
def _client(url: str, socket_timeout: float) -> redis.Redis:
    # Longer than the blocking wait for answers: redis-py's default socket timeout (5 s) would cut it short.
    return redis.Redis.from_url(url, socket_timeout=socket_timeout)
