"""The inference side of a worker: requests from the `inference` queue, model validation, the model
cache and its control channel (load / unload / list, sent by the API to this worker through Redis).

A request for a warm model is answered in the worker's task slot; one for a cold model from the loader
thread, so a load (seconds for a large model) never holds up the warm ones. Uploads arrive as Redis
blobs beside the message (app/inference/service.py), fetched with one MGET and deleted with the reply.

GPU sharing: training holds the device's lease for a whole job; a predict or a model's warm-up takes
the same lease (and this process's threads take turns on it), so the two never run on one GPU at once
(TRAINYARD_INFERENCE_POLICY decides whether a request waits or goes to another worker). A trainer that
takes the lease empties this cache and those of the GPU's other workers (workers/inference/sharing.py),
so warm models and a trainer never share its memory.
"""

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from app.core.db import Database
from app.core.errors import ErrorCode
from app.core.settings import Settings
from app.core.storage import LocalStorage, Storage
from app.core.tasks import Queue, TaskName
from app.inference import protocol
from workers.identity import WorkerIdentity
from workers.inference.cache import ModelCache
from workers.inference.predictor import InferenceError, decode, read_model, serialize, warm_up
from workers.lock import GpuLease

log = logging.getLogger("operations.inference")

MAX_HOPS = 3  # `other-worker`: how often a request may be handed on before it waits like `wait`


class BusyDevice(Exception):
    """`other-worker` policy: the GPU is training; the request was handed back to the queue."""


class InferenceService:
    def __init__(
        self,
        db: Database,
        storage: Storage,
        lease: GpuLease,
        identity: WorkerIdentity,
        settings: Settings,
        client: redis.Redis,
        training_active: Callable[[], bool] = lambda: False,
    ) -> None:
        self.db = db
        self.storage = storage
        self.lease = lease
        self.identity = identity
        self.settings = settings
        self.redis = client
        self.training_active = training_active
        self.weights_dir = settings.resolved_data_dir / "model-cache" / identity.name
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        self.cache = ModelCache(self._load, settings.model_cache_size, int(settings.model_cache_mb * 2**20))
        self.cache.on_change = self.publish_cache
        self._control: threading.Thread | None = None
        self._done = threading.Event()
        # Cold loads (and validations, which load) run here, off the worker's one task slot.
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-decoder")

    def _load(self, ref: dict[str, Any]) -> tuple[Any, int]:
        """Read the weights outside the device (disk or S3, seconds for a large model), then warm up
        on it under the lease (the only part that takes GPU memory)."""
        started = time.perf_counter()
        model = read_model(ref, self.storage, self.weights_dir)
        with self.device(time.time() + self.settings.lease_ttl_seconds):
            nbytes = warm_up(model, ref, self.identity.trainer_device)
        log.info("loaded model %s in %.0f ms", ref["id"], (time.perf_counter() - started) * 1000)
        return model, nbytes

    # Requests ------------------------------------------------------------------------------------
    def infer(self, payload: dict[str, Any]) -> None:
        """Answer a request for a warm model at once; one for a cold model from the loader thread, so
        the worker's queue keeps moving for warm models while it loads."""
        received = time.time()
        if self.cache.is_warm(payload["model"]):
            self.answer(payload, received)
        else:
            self._loader.submit(self.answer, payload, received)

    def answer(self, payload: dict[str, Any], received: float) -> None:
        """Answer one request on its reply key, whatever happens (the worker keeps serving)."""
        blobs = [item["blob"] for item in payload["images"] if "blob" in item]
        if time.time() > float(payload.get("deadline", received + 1)):
            log.info("inference request %s expired in the queue; dropped", payload.get("request_id"))
            self._forget(blobs)
            return
        try:
            reply = self.run(payload, received)
        except BusyDevice:
            return  # handed on, blobs and all
        except InferenceError as exc:
            reply = exc.reply()
        except Exception:
            log.exception("inference request %s failed", payload.get("request_id"))
            reply = self._internal_error()
        if "chunk" in payload:
            reply["chunk"] = payload["chunk"]  # one chunk of an inference job
        key = payload["reply_key"]
        pipe = self.redis.pipeline()
        pipe.rpush(key, protocol.encode(reply))
        pipe.expire(key, int(payload.get("reply_ttl", protocol.REPLY_TTL_SECONDS)))
        if blobs:
            pipe.delete(*blobs)
        if "job_id" in payload:
            pipe.publish(protocol.job_channel(str(payload["job_id"])), str(payload.get("chunk", "")))
        pipe.execute()

    def _internal_error(self) -> dict[str, Any]:
        # The client gets no exception text: it may name server paths or modules. The log has it all.
        detail = f"internal error on worker {self.identity.name}; see its log"
        return {"ok": False, "status": 500, "code": ErrorCode.INTERNAL_ERROR, "detail": detail}

    def _forget(self, blobs: list[str]) -> None:
        if blobs:
            with contextlib.suppress(redis.RedisError):
                self.redis.delete(*blobs)

    def run(self, payload: dict[str, Any], received: float | None = None) -> dict[str, Any]:
        received = received or time.time()
        started = time.perf_counter()
        items: list[dict[str, Any]] = payload["images"]
        ref, params = payload["model"], payload.get("params", {})
        if self._hand_on(payload):
            raise BusyDevice
        blobs = self._blobs(items)
        size = self.settings.inference_batch_size
        batches = [items[i : i + size] for i in range(0, len(items), size)]
        upcoming: Future[list[Any]] | None = None
        images = self._decode(batches[0], blobs)  # a bad image fails the request before any load
        decoded = time.perf_counter()
        entry, hit = self.cache.get(ref)  # a miss loads here
        loaded = time.perf_counter()
        results: list[Any] = []
        with self.device(float(payload.get("deadline", time.time() + 30))):
            acquired = time.perf_counter()
            for number in range(len(batches)):
                if number + 1 < len(batches):  # the next batch decodes while this one predicts
                    upcoming = self._decoder.submit(self._decode, batches[number + 1], blobs)
                results += entry.model.predict(
                    images,
                    conf=params.get("conf", 0.25),
                    iou=params.get("iou", 0.7),
                    imgsz=params.get("imgsz") or ref.get("imgsz") or 640,
                    max_det=params.get("max_det", 300),
                    device=self.identity.trainer_device,
                    verbose=False,
                )
                if upcoming is not None:
                    images, upcoming = upcoming.result(), None
        predicted = time.perf_counter()
        top_k = int(params.get("top_k", 5))
        return {
            "ok": True,
            "model_id": ref["id"],
            "task": ref["task"],
            "worker": self.identity.name,
            "cache_hit": hit,
            "results": [
                {"name": item.get("name"), **serialize(r, ref["task"], top_k)}
                for item, r in zip(items, results, strict=True)
            ],
            "timing_ms": {
                "queue": round((received - float(payload.get("sent_at", received))) * 1000, 3),
                "decode": round((decoded - started) * 1000, 3),
                "load": round((loaded - decoded) * 1000, 3),
                "device_wait": round((acquired - loaded) * 1000, 3),
                "predict": round((predicted - acquired) * 1000, 3),
                "worker_total": round((time.perf_counter() - started) * 1000, 3),
            },
        }

    def _decode(self, items: list[dict[str, Any]], blobs: dict[str, bytes | None]) -> list[Any]:
        return [self._image(item, blobs) for item in items]

    def _blobs(self, items: list[dict[str, Any]]) -> dict[str, bytes | None]:
        """The request's uploads, from Redis in one MGET (None: expired)."""
        keys = [item["blob"] for item in items if "blob" in item]
        values: list[Any] = self.redis.mget(keys) if keys else []
        return dict(zip(keys, values, strict=True))

    def _image(self, item: dict[str, Any], fetched: dict[str, bytes | None]) -> Any:
        name = str(item.get("name") or item.get("key") or "image")
        if "blob" in item:
            blob = fetched[item["blob"]]
            if blob is None:
                raise InferenceError(
                    504, ErrorCode.INFERENCE_TIMEOUT, f"{name}: the upload expired before a worker took it"
                )
            data = blob
        else:
            key = str(item["key"])
            if isinstance(self.storage, LocalStorage):
                data = self.storage.path(key).read_bytes()
            else:
                local = self.weights_dir / "inputs" / Path(key).name
                data = self.storage.get_file(key, local).read_bytes()
                local.unlink(missing_ok=True)
        max_bytes = self.settings.inference_max_image_mb * 2**20
        if len(data) > max_bytes:
            raise InferenceError(413, ErrorCode.IMAGE_TOO_LARGE, f"{name}: larger than {max_bytes:.0f} bytes")
        return decode(name, data, self.settings.inference_max_pixels)

    @contextlib.contextmanager
    def device(self, deadline: float) -> Iterator[None]:
        """Hold the GPU's lease while predicting or warming up (training holds it for whole jobs)."""
        timeout = max(0.0, min(deadline - time.time(), self.settings.lease_ttl_seconds))
        if not self.lease.acquire(timeout=timeout, local_only=self.identity.device == "cpu"):
            raise InferenceError(
                503, ErrorCode.INFERENCE_TIMEOUT, "the GPU stayed busy (training) until the deadline"
            )
        try:
            yield
        finally:
            self.lease.release()

    def _hand_on(self, payload: dict[str, Any]) -> bool:
        """`other-worker` policy: a GPU busy with training sends the request back to the queue for
        another worker (before any load: loading would wait for the trainer), at most MAX_HOPS times."""
        hops = int(payload.get("hops", 0))
        if self.settings.inference_policy != "other-worker" or hops >= MAX_HOPS or self.gpu_trainer() is None:
            return False
        from workers.celery_app import celery_app

        log.info("GPU busy with training; handing inference request %s on", payload.get("request_id"))
        celery_app.send_task(
            TaskName.INFER, args=[{**payload, "hops": hops + 1}], queue=Queue.INFERENCE, countdown=0.2
        )
        return True

    # Validation ----------------------------------------------------------------------------------
    def validate(self, model_id: int) -> None:
        """Load the registered model and predict once (on the loader thread, like any cold load)."""
        self._loader.submit(self._validate, model_id)

    def _validate(self, model_id: int) -> None:
        """Record `ready` or `failed` with the reason."""
        from app.inference.protocol import model_ref
        from app.model_registry.service import get_model, mark_validated

        with self.db.session() as session:
            ref = model_ref(get_model(session, model_id))
        ok, reason, names = True, None, list(ref["class_names"])
        try:
            entry, _ = self.cache.get(ref)
            names = names or [str(entry.model.names[k]) for k in sorted(entry.model.names)]
        except InferenceError as exc:
            ok, reason = False, exc.detail
        with self.db.session() as session:
            mark_validated(session, model_id, ok, reason, names)
        log.info("model %s validated: %s", model_id, "ready" if ok else reason)

    # Control channel -----------------------------------------------------------------------------
    def publish_cache(self) -> None:
        state = {"worker": self.identity.name, "updated_at": time.time(), **self.cache.snapshot()}
        with contextlib.suppress(redis.RedisError):
            self.redis.set(protocol.models_key(self.identity.name), json.dumps(state), ex=3600)

    def start_control(self) -> None:
        if self._control is None:
            self.publish_cache()
            self._control = threading.Thread(target=self._serve_control, name="model-control", daemon=True)
            self._control.start()

    def stop_control(self) -> None:
        self._done.set()

    def _serve_control(self) -> None:
        key = protocol.control_key(self.identity.name)
        while not self._done.is_set():
            try:
                popped = self.redis.blpop([key], timeout=2)
            except redis.RedisError:
                time.sleep(1)
                continue
            if popped is not None:
                self.control(json.loads(popped[1]))

    def control(self, message: dict[str, Any]) -> None:
        """`load` (pre-warm) or `unload` a model, `evict` them all (a trainer takes the GPU), or just
        `list`; the reply is the cache's state."""
        reply: dict[str, Any] = {"ok": True}
        try:
            if message["action"] == "load" and (trainer := self.gpu_trainer()) is not None:
                reply = {
                    "ok": False,
                    "status": 409,
                    "code": ErrorCode.CONFLICT,
                    "detail": f"the worker's GPU is training ({trainer}); load the model when it is done",
                }
            elif message["action"] == "load":
                _, hit = self.cache.get(message["model"])
                reply["already_loaded"] = hit
            elif message["action"] == "unload":
                reply["unloaded"] = self.cache.unload(int(message["model_id"]))
            elif message["action"] == "evict":
                reply["evicted"] = self.evict()
                log.info("%s model(s) dropped for the trainer %s", reply["evicted"], message.get("by"))
        except InferenceError as exc:
            reply = exc.reply()
        except Exception:
            log.exception("model control message failed")
            reply = self._internal_error()
        reply["state"] = {"worker": self.identity.name, **self.cache.snapshot()}
        if message.get("reply_key"):
            self.redis.rpush(message["reply_key"], protocol.encode(reply))
            self.redis.expire(message["reply_key"], protocol.REPLY_TTL_SECONDS)

    # GPU sharing (workers/inference/sharing.py) ---------------------------------------------------
    def before_training(self) -> None:
        """Free the GPU's memory for this process's trainer (the lease is held): no two tenants."""
        if self.identity.device != "cpu" and self.evict():
            log.info("model cache emptied for a training job on GPU %s", self.identity.device)

    def gpu_trainer(self) -> str | None:
        """Who trains on this worker's GPU: this process, or another holding the device's lease."""
        if self.identity.device == "cpu":
            return None
        if self.training_active():
            return self.identity.name
        owner = self.lease.lock.get_owner_id()
        # Our own lease outside training is one of our predicts. Another process's is a trainer, or for a
        # moment a peer's predict: refusing that one too costs a retry, loading under a trainer an OOM.
        return owner if owner is not None and owner != self.identity.name else None

    def evict(self) -> int:
        """Drop every warm model and give their GPU memory back to the driver; how many were dropped."""
        dropped = self.cache.clear()
        if self.identity.device != "cpu" and not self.identity.simulated:
            import gc

            import torch

            if torch.cuda.is_available():
                gc.collect()  # a model caught in a reference cycle would keep its tensors until then
                # The allocator keeps freed blocks reserved for this process; the trainer is another.
                torch.cuda.empty_cache()
        return dropped
