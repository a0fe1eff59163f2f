"""HTTP endpoints of inference (synchronous requests and inference jobs) and of worker model caches."""

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from sse_starlette import EventSourceResponse

from app.core.auth import PrincipalDep, read_only
from app.core.deps import DatabaseDep, SessionDep
from app.core.errors import invalid
from app.core.inputs import Id
from app.core.jobs import TaskType
from app.core.settings import get_settings
from app.inference import schemas, service
from app.inference.job_stream import job_events
from app.inference.protocol import model_ref
from app.inference.recent_models import recent_models
from app.inference.service import Params, Upload
from app.model_registry.service import get_model
from app.models import ModelStatus
from app.observability.metrics import INFERENCE_LATENCY

router = APIRouter(prefix="/api/v1/inference", tags=["inference"])
workers_router = APIRouter(prefix="/api/v1/workers/{worker_id}/models", tags=["workers"])

Files = Annotated[list[UploadFile] | None, File(description="images (multipart)")]
Keys = Annotated[list[str] | None, Form(description="storage keys of images")]
Conf = Annotated[float, Form(ge=0.0, le=1.0)]
Iou = Annotated[float, Form(ge=0.0, le=1.0)]
Imgsz = Annotated[int | None, Form(ge=32, le=4096, description="default: the model's training size")]
MaxDet = Annotated[int, Form(ge=1, le=3000)]
TopK = Annotated[int, Form(ge=1, le=100, description="classification: classes returned per image")]
INLINE_BYTES = 2**20


def _uploads(files: list[UploadFile] | None) -> list[Upload]:
    return [Upload(f.filename or f"image-{i}", f.file) for i, f in enumerate(files or [])]


@router.post("", response_model=schemas.InferenceRead)
@read_only  # runs a model, writes nothing: viewers may call it
async def infer(
    request: Request,
    db: DatabaseDep,
    principal: PrincipalDep,
    files: Files = None,
    keys: Keys = None,
    model_id: Annotated[Id | None, Form()] = None,
    project_id: Annotated[Id | None, Form(description="with no model_id: its active model")] = None,
    task: Annotated[TaskType | None, Form()] = None,
    conf: Conf = 0.25,
    iou: Iou = 0.7,
    imgsz: Imgsz = None,
    max_det: MaxDet = 300,
    top_k: TopK = 5,
    timeout: Annotated[float | None, Form(gt=0, le=600)] = None,
) -> Response:
    """Run a model on a few images through a worker and answer when it is done (504 past `timeout`)."""
    settings = get_settings()
    count = len(files or []) + len(keys or [])
    if count > settings.inference_sync_max_images:
        raise invalid(
            "files", f"more than {settings.inference_sync_max_images} images: use /inference/jobs", 413
        )
    wait = timeout or settings.inference_timeout_seconds
    uploads = _uploads(files)
    cached = recent_models.get(principal, model_id, project_id, task)
    if cached is not None and not keys and _small(files):
        # A model resolved a moment ago and nothing to look up: what is left is a header read per
        # upload, in memory, done here rather than in a thread (a hop costs a wake-up each way).
        service.require_images(uploads, [])
        ref, images = cached, service.uploaded_images(uploads)
    else:

        def resolve_and_check() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            with db.read_session() as session:
                found = cached or recent_models.resolve(session, principal, model_id, project_id, task)
                return found, service.images_of(session, principal, uploads, keys or [])

        ref, images = await anyio.to_thread.run_sync(resolve_and_check)
    reply = schemas.InferenceRead.model_validate(
        await service.infer(ref, images, Params(conf, iou, imgsz, max_det, top_k), wait)
    )
    spent = time.perf_counter() - request.state.arrived
    INFERENCE_LATENCY.observe(spent)
    reply.timing_ms["api"] = round(spent * 1000, 3)  # all but the JSON of this body and its sending
    return Response(reply.model_dump_json(), media_type="application/json")


def _small(files: list[UploadFile] | None) -> bool:
    """Uploads small enough to read and check on the event loop (they are in memory: Starlette spools
    a file to disk past 1 MB)."""
    sizes = [f.size for f in files or []]
    return all(size is not None for size in sizes) and sum(size or 0 for size in sizes) <= INLINE_BYTES


@router.post("/jobs", status_code=202, response_model=schemas.InferenceJobRead)
def submit_job(
    session: SessionDep,
    principal: PrincipalDep,
    files: Files = None,
    keys: Keys = None,
    model_id: Annotated[Id | None, Form()] = None,
    project_id: Annotated[Id | None, Form()] = None,
    task: Annotated[TaskType | None, Form()] = None,
    conf: Conf = 0.25,
    iou: Iou = 0.7,
    imgsz: Imgsz = None,
    max_det: MaxDet = 300,
    top_k: TopK = 5,
) -> dict[str, Any]:
    """A large batch: images go to storage and are run in chunks; poll the job for progress and results."""
    model = service.resolve_model(session, principal, model_id, project_id, task)
    params = Params(conf, iou, imgsz, max_det, top_k)
    return service.submit_job(session, principal, model, _uploads(files), keys or [], params)


@router.get("/jobs/{inference_id}", response_model=schemas.InferenceJobRead)
def get_job(inference_id: str, principal: PrincipalDep) -> dict[str, Any]:
    """Progress of an inference job (chunks answered out of chunks queued)."""
    return service.job_status(inference_id, principal)


@router.get("/jobs/{inference_id}/results", response_model=schemas.InferenceJobRead)
def get_job_results(inference_id: str, principal: PrincipalDep) -> dict[str, Any]:
    """Progress and the results so far, in the order the images were sent."""
    return service.job_status(inference_id, principal, with_results=True)


@router.get("/jobs/{inference_id}/events", response_class=EventSourceResponse)
def get_job_events(inference_id: str, request: Request, principal: PrincipalDep) -> EventSourceResponse:
    """Server-sent events: `progress` as chunks are answered, then `status` with the final status."""
    service.job_status(inference_id, principal)  # 404 before the stream starts

    async def messages() -> AsyncIterator[dict[str, Any]]:
        async for event in job_events(inference_id, request.is_disconnected):
            yield {"id": str(event["id"]), "event": event["event"], "data": json.dumps(event["data"])}

    return EventSourceResponse(messages(), ping=get_settings().sse_ping_seconds)


@workers_router.get("")
def worker_models(worker_id: str, principal: PrincipalDep) -> dict[str, Any]:
    """The models warm in the worker's cache (most recently used first), its bounds and counters."""
    principal.require_all_projects("reading a worker's model cache")
    return service.worker_models(worker_id)


@workers_router.post("")
async def control_models(
    worker_id: str, body: schemas.WorkerModelsAction, db: DatabaseDep, principal: PrincipalDep
) -> dict[str, Any]:
    """`load` a model into the worker's cache ahead of requests (pre-warm), or `unload` it. Admin keys
    (or keys for all projects) only: workers serve every project."""
    principal.require_all_projects("managing a worker's model cache")

    def send() -> str:
        message: dict[str, Any] = {"action": body.action, "model_id": body.model_id}
        if body.action == "load":
            with db.session() as session:
                model = get_model(session, body.model_id)
                if model.status == ModelStatus.FAILED:
                    raise invalid("model_id", f"model {model.id} failed validation: {model.status_reason}")
                message["model"] = model_ref(model)
        return service.send_control(worker_id, message)

    reply_key = await anyio.to_thread.run_sync(send)
    timeout = get_settings().inference_timeout_seconds
    return await service.pop_reply(reply_key, timeout, f"worker {worker_id} did not answer in {timeout:g} s")
