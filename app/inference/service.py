"""Inference as the API sees it: pick the model, check the images, send the request to the `inference`
queue and wait for the worker's answer on the request's reply key. Large batches become inference
jobs: the images go to storage, chunks are queued, and their answers collect under the job's key.
"""

import asyncio
import json
import math
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import redis.asyncio as aioredis
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.errors import AppError, ErrorCode, invalid, not_found
from app.core.naming import slugify
from app.core.redis import get_redis
from app.core.settings import get_settings
from app.core.storage import UnsafeKey, check_key, get_storage
from app.core.tasks import Queue, TaskName, queue_entry, send_task
from app.core.visibility import ensure_project_visible, ensure_visible, key_visible, missing
from app.core.workers import live_workers
from app.inference import protocol
from app.inference.images import ImageRefused, image_size
from app.model_registry.deployments import active_model, deployed_tasks
from app.model_registry.service import get_model
from app.models import ModelStatus, RegisteredModel
from app.projects.service import get_project

JOB_CHUNK = 16
MAX_WAIT_SECONDS = 600
JOB_TTL_SECONDS = 24 * 3600


_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = (
    weakref.WeakKeyDictionary()
)


def _waiting_async_client() -> aioredis.Redis:
    """One pool per event loop (a connection per waiting request, reused after)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        url = get_settings().resolved_redis_url
        client = aioredis.Redis.from_url(url, socket_timeout=MAX_WAIT_SECONDS + 10, socket_connect_timeout=5)
        _async_clients[loop] = client
    return client


@dataclass(frozen=True)
class Upload:
    name: str
    file: BinaryIO


@dataclass(frozen=True)
class Params:
    conf: float
    iou: float
    imgsz: int | None
    max_det: int
    top_k: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "conf": self.conf,
            "iou": self.iou,
            "imgsz": self.imgsz,
            "max_det": self.max_det,
            "top_k": self.top_k,
        }


def resolve_model(
    session: Session, principal: Principal, model_id: int | None, project_id: int | None, task: str | None
) -> RegisteredModel:
    """`model_id`, or the project's active model (for `task`, or its only deployed task); it must be
    ready, of the project when one is given, and of `task` when one is given."""
    if model_id is not None:
        model = get_model(session, model_id, principal=principal)
        if project_id is not None and model.project_id != project_id:
            raise invalid("model_id", f"model {model_id} belongs to another project")
    else:
        if project_id is None:
            raise invalid("model_id", "give model_id, or project_id to use the project's active model")
        ensure_project_visible(principal, project_id)
        get_project(session, project_id)
        tasks = [task] if task is not None else deployed_tasks(session, project_id)
        found = active_model(session, project_id, tasks[0]) if len(tasks) == 1 else None
        if found is None:
            what = f"an active {task} model" if task else "exactly one active model (give task)"
            raise AppError(409, ErrorCode.CONFLICT, f"project {project_id} has no {what}")
        model = found
    if task is not None and task != model.task_type:
        raise invalid("task", f"model {model.id} is a {model.task_type} model, not {task}")
    if model.status != ModelStatus.READY:
        raise AppError(409, ErrorCode.MODEL_NOT_READY, f"model {model.id} is {model.status}, not ready")
    return model


def read_upload(upload: Upload) -> bytes:
    """The file's bytes once its size and header pass (full decoding happens on the worker)."""
    settings = get_settings()
    limit = int(settings.inference_max_image_mb * 2**20)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise AppError(
            413, ErrorCode.IMAGE_TOO_LARGE, f"{upload.name}: larger than {settings.inference_max_image_mb} MB"
        )
    try:
        image_size(data, settings.inference_max_pixels)
    except ImageRefused as exc:
        status, code = (413, ErrorCode.IMAGE_TOO_LARGE) if exc.too_large else (422, ErrorCode.INVALID_IMAGE)
        raise AppError(status, code, f"{upload.name}: {exc}") from exc
    return data


def check_storage_key(session: Session, principal: Principal, key: str) -> str:
    """A well-formed key of an object the caller may see; one of a project it does not cover is a 404
    exactly like a missing one (nothing about it is read: no size, no format)."""
    try:
        check_key(key)
    except UnsafeKey as exc:
        raise invalid("keys", str(exc)) from exc
    if not key_visible(session, principal, key) or not get_storage().exists(key):
        raise missing("keys", f"no image at storage key {key!r}")
    return key


def check_upload(upload: Upload) -> None:
    """Check an upload without keeping its bytes (an inference job stores them once all pass)."""
    read_upload(upload)
    upload.file.seek(0)


def require_images(uploads: Sequence[object], keys: list[str]) -> None:
    """422 when the request has no image at all."""
    if not uploads and not keys:
        raise invalid("files", "send at least one image (files) or storage key (keys)")


def checked_keys(
    session: Session, principal: Principal, uploads: list[Upload], keys: list[str]
) -> list[dict[str, Any]]:
    """The request's storage keys as images, checked; 422 when the request has no image at all."""
    require_images(uploads, keys)
    return [{"name": k, "key": check_storage_key(session, principal, k)} for k in keys]


def uploaded_images(uploads: list[Upload]) -> list[dict[str, Any]]:
    """The uploads as bytes, checked."""
    return [{"name": u.name, "bytes": read_upload(u)} for u in uploads]


def images_of(
    session: Session, principal: Principal, uploads: list[Upload], keys: list[str]
) -> list[dict[str, Any]]:
    """The request's images: uploads as bytes (checked), storage keys as keys (checked)."""
    stored = checked_keys(session, principal, uploads, keys)
    return uploaded_images(uploads) + stored


def stage_blobs(pipe: Any, request_id: str, images: list[dict[str, Any]], ttl: int) -> list[dict[str, Any]]:
    """Uploaded bytes go to Redis beside the message, not inside it: a Celery message body is JSON,
    base64-encoded again by kombu, and an image inside it costs the broker and the worker's consumer
    milliseconds per 100 KB. The worker fetches the blobs with one MGET and deletes them."""
    staged = []
    for i, image in enumerate(images):
        if "bytes" in image:
            key = protocol.blob_key(request_id, i)
            pipe.set(key, image["bytes"], ex=ttl)
            image = {"name": image["name"], "blob": key}
        staged.append(image)
    return staged


async def infer(
    ref: dict[str, Any], images: list[dict[str, Any]], params: Params, timeout: float
) -> dict[str, Any]:
    """Stage the uploads and queue the request for a worker of the `inference` queue in one pipeline
    (one round trip, from the event loop without a thread), then wait for the reply (504 past
    `timeout`). Redis runs the pipeline in order: the blobs are there before the message. The wait is
    off the critical path (the worker takes longer than a round trip), and a refused write (Redis out of
    memory) is a 500 at once rather than after the wait."""
    started = time.perf_counter()
    request_id = uuid.uuid4().hex
    reply_key = protocol.reply_key(request_id)
    now = time.time()
    client = _waiting_async_client()
    async with client.pipeline(transaction=False) as pipe:
        staged = stage_blobs(pipe, request_id, images, math.ceil(timeout) + protocol.REPLY_TTL_SECONDS)
        payload = {
            "request_id": request_id,
            "reply_key": reply_key,
            "sent_at": now,
            "deadline": now + timeout,
            "model": ref,
            "images": staged,
            "params": params.as_dict(),
        }
        pipe.lpush(*queue_entry(TaskName.INFER, [payload], Queue.INFERENCE, argsrepr=request_id))
        await pipe.execute()
    reply = _reply_of(
        await client.blpop([reply_key], timeout=timeout), f"no worker answered within {timeout:g} s"
    )
    reply.pop("ok")
    reply["request_id"] = request_id
    reply["timing_ms"]["round_trip"] = round((time.perf_counter() - started) * 1000, 3)
    return reply


async def pop_reply(key: str, timeout: float, late: str) -> dict[str, Any]:
    """A worker's reply on `key`, waited for without holding a thread: its problem raised when it
    refused, 504 (`late`) when none came in time."""
    return _reply_of(await _waiting_async_client().blpop([key], timeout=timeout), late)


def _reply_of(popped: Any, late: str) -> dict[str, Any]:
    if popped is None:
        raise AppError(504, ErrorCode.INFERENCE_TIMEOUT, late)
    reply: dict[str, Any] = json.loads(popped[1])
    if not reply.get("ok"):
        raise AppError(int(reply["status"]), ErrorCode(reply["code"]), str(reply["detail"]))
    return reply


# Inference jobs (large batches) -----------------------------------------------------------------
def submit_job(
    session: Session,
    principal: Principal,
    model: RegisteredModel,
    uploads: list[Upload],
    keys: list[str],
    params: Params,
) -> dict[str, Any]:
    """Check every image, then store the uploads and queue the images in chunks; answers collect under
    the job's results key. A refused request stores nothing."""
    stored = checked_keys(session, principal, uploads, keys)
    for upload in uploads:
        check_upload(upload)
    job_id = uuid.uuid4().hex
    storage = get_storage()
    items: list[dict[str, Any]] = []
    for i, upload in enumerate(uploads):
        key = f"inference/jobs/{job_id}/inputs/{i:05d}-{slugify(upload.name) or 'image'}"
        storage.put_bytes(key, read_upload(upload))
        items.append({"name": upload.name, "key": key})
    items += stored
    chunks = [items[i : i + JOB_CHUNK] for i in range(0, len(items), JOB_CHUNK)]
    state = {
        "id": job_id,
        "model_id": model.id,
        "project_id": model.project_id,
        "images": len(items),
        "chunks": len(chunks),
        "created_at": time.time(),
    }
    client = get_redis()
    client.set(protocol.job_key(job_id), json.dumps(state), ex=JOB_TTL_SECONDS)
    results_key = protocol.job_key(job_id) + ":results"
    now = time.time()
    for number, chunk in enumerate(chunks):
        payload = {
            "request_id": f"{job_id}-{number}",
            "job_id": job_id,
            "reply_key": results_key,
            "reply_ttl": JOB_TTL_SECONDS,
            "chunk": number,
            "sent_at": now,
            "deadline": now + JOB_TTL_SECONDS,
            "model": protocol.model_ref(model),
            "images": chunk,
            "params": params.as_dict(),
        }
        send_task(TaskName.INFER, [payload], Queue.INFERENCE)
    return {**job_status(job_id), "events_url": f"/api/v1/inference/jobs/{job_id}/events"}


JOB_FINAL = frozenset({"completed", "completed_with_errors", "failed"})


def job_status(job_id: str, principal: Principal | None = None, with_results: bool = False) -> dict[str, Any]:
    client = get_redis()
    raw = client.get(protocol.job_key(job_id))
    if raw is None:
        raise not_found("inference job", job_id)
    state: dict[str, Any] = json.loads(raw)
    if principal is not None:
        ensure_visible(principal, int(state.get("project_id", 0)), "inference job", job_id)
    replies = [json.loads(r) for r in client.lrange(protocol.job_key(job_id) + ":results", 0, -1)]
    failed = [r for r in replies if not r.get("ok")]
    done = len(replies)
    status = "queued" if done == 0 else "running" if done < state["chunks"] else "completed"
    if failed and done == state["chunks"]:
        status = "failed" if len(failed) == done else "completed_with_errors"
    state.update(
        status=status,
        chunks_done=done,
        progress=round(done / state["chunks"], 4),
        errors=[{k: r.get(k) for k in ("status", "code", "detail")} for r in failed],
    )
    if with_results:
        ordered = sorted((r for r in replies if r.get("ok")), key=lambda r: int(r.get("chunk", 0)))
        state["results"] = [item for r in ordered for item in r["results"]]
    return state


# Worker model caches ---------------------------------------------------------------------------
def _live_worker(worker_id: str) -> dict[str, Any]:
    for worker in live_workers(get_redis()):
        if worker.get("id") == worker_id:
            return worker
    raise not_found("worker", worker_id)


def worker_models(worker_id: str) -> dict[str, Any]:
    """What the worker last published about its model cache."""
    _live_worker(worker_id)
    raw = get_redis().get(protocol.models_key(worker_id))
    state: dict[str, Any] = json.loads(raw) if raw else {"worker": worker_id, "models": []}
    return state


def send_control(worker_id: str, message: dict[str, Any]) -> str:
    """Send a control message to one live worker; the key its answer comes back on."""
    _live_worker(worker_id)
    reply_key = protocol.reply_key(uuid.uuid4().hex)
    get_redis().rpush(protocol.control_key(worker_id), protocol.encode({**message, "reply_key": reply_key}))
    return reply_key
