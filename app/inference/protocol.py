"""The messages between the API and the inference side of a worker, and the Redis keys they use.

A request goes out as a Celery task on the `inference` queue (by name); its answer comes back on a
Redis list private to the request (`reply_key`), which the API pops with a timeout. No Celery result
backend is involved, and a reply nobody waits for expires on its own.
"""

import json
from typing import Any

from app.core.redis import channel_prefix
from app.models import RegisteredModel

REPLY_TTL_SECONDS = 120
# Not under the presence prefix (trainyard:worker:<id>), which app/core/workers.py scans.
CONTROL_PREFIX = "trainyard:worker-control:"
MODELS_PREFIX = "trainyard:worker-models:"


def reply_key(request_id: str) -> str:
    return f"trainyard:inference:reply:{request_id}"


def blob_key(request_id: str, index: int) -> str:
    """The bytes of one uploaded image of a request (raw, with a TTL; the worker deletes it)."""
    return f"trainyard:inference:blob:{request_id}:{index}"


def control_key(worker_id: str) -> str:
    """The list a worker's control thread pops: load, unload and list its cached models."""
    return f"{CONTROL_PREFIX}{worker_id}"


def models_key(worker_id: str) -> str:
    """Where a worker publishes what its model cache holds (refreshed on every change)."""
    return f"{MODELS_PREFIX}{worker_id}"


def job_key(job_id: str) -> str:
    """State of an inference job (large batches): a Redis hash with a TTL."""
    return f"trainyard:inference:job:{job_id}"


def job_channel(job_id: str) -> str:
    """Pub/sub doorbell of an inference job: a chunk was answered (the state is re-read, not trusted)."""
    return f"{channel_prefix()}inference:job:{job_id}:events"


def model_ref(model: RegisteredModel) -> dict[str, Any]:
    """What a worker needs to load a registered model, without reading the database."""
    key = model.exported_key or model.weights_key
    return {
        "id": model.id,
        "weights_key": key,
        # A re-registered job (new best.pt) gets a new version, so no worker serves stale weights.
        "version": f"{model.revision}:{key}",
        "task": model.task_type,
        "class_names": model.class_names,
        "imgsz": model.imgsz,
    }


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
