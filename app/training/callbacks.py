"""The trainer callback API: what an external trainer reports over HTTP, with TrainerSDK's HttpTransport.

Each request carries the attempt's token (`Authorization: Bearer <token>` or `X-Job-Token`); the
attempt is read from the token. The bodies are the report protocol's models (trainyard_sdk/reports.py)
and every report goes through `apply_report` (app/training/reports.py), the same fenced path as the
worker's own trainer. A wrong or missing token is 401; a report for a finished job or from a stale
attempt is 409; neither changes anything. docs/trainer-contract.md has the whole contract.

Checkpoints: HTTP trainers put their weights somewhere first, then report `path`, one of
- a URI (`s3://...`, `https://...`) they uploaded to: recorded as is;
- a storage key under the job's prefix (`projects/<p>/model/training/<name>/...`) that exists: recorded;
- an absolute file path inside the server's runs folder (`$TRAINYARD_DATA_DIR/runs`, for trainers on
  the same machine or a shared filesystem): copied into the job's `weights/<kind>.pt`, as the worker does.
"""

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.core.auth import public
from app.core.deps import DatabaseDep, SessionDep
from app.core.errors import AppError, ErrorCode, invalid
from app.core.events import StaleAttempt
from app.core.security import token_attempt, token_hash
from app.core.settings import get_settings
from app.core.storage import UnsafeKey, get_storage
from app.core.visibility import get_visible
from app.models import TrainingJob
from app.training.reports import apply_report, ensure_active
from app.training.state import JobFinished
from trainyard_sdk.reports import (
    CheckpointReport,
    LogReport,
    MetricsReport,
    OutcomeReport,
    ProgressReport,
    Report,
    StartedReport,
)

router = APIRouter(prefix="/api/v1/training/jobs/{job_id}/callback", tags=["trainer callbacks"])


class Ack(BaseModel):
    status: Literal["ok"] = "ok"
    job_id: int
    received: int | None = None


@dataclass(frozen=True)
class Caller:
    """A trainer proven by its token to run `attempt` of `job_id`."""

    job_id: int
    attempt: int


def authenticate(
    job_id: int,
    db: DatabaseDep,
    authorization: Annotated[str | None, Header()] = None,
    x_job_token: Annotated[str | None, Header()] = None,
) -> Caller:
    token = x_job_token
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else None
    attempt = token_attempt(job_id, token) if token else None
    if token is None or attempt is None:
        raise AppError(401, ErrorCode.UNAUTHORIZED, f"a valid job token of training job {job_id} is required")
    # A short read of its own: the report itself runs in the request session, under the job lock.
    with db.session() as session:
        job = get_visible(session, None, TrainingJob, job_id)
        stored = job.callback_token_hash
        current = attempt == job.attempt
        if current and stored is not None and not hmac.compare_digest(stored, token_hash(token)):
            raise AppError(401, ErrorCode.UNAUTHORIZED, "the job token was revoked")
    return Caller(job_id, attempt)


CallerDep = Annotated[Caller, Depends(authenticate)]


def _apply(session: Session, caller: Caller, report: Report, fence_only: bool = False) -> None:
    """Apply one report under the caller's attempt (or only check that it may be applied); a refused
    report is a 409 and rolls back."""
    if report.attempt is not None and report.attempt != caller.attempt:
        raise AppError(401, ErrorCode.UNAUTHORIZED, f"the job token was issued for attempt {caller.attempt}")
    try:
        if fence_only:
            ensure_active(session, caller.job_id, caller.attempt)
        else:
            apply_report(session, caller.job_id, caller.attempt, report)  # type: ignore[arg-type]
    except JobFinished as exc:
        raise AppError(409, ErrorCode.CONFLICT, f"training job {exc.job_id} is finished") from exc
    except StaleAttempt as exc:
        raise AppError(409, ErrorCode.CONFLICT, str(exc)) from exc


def _report_route(path: str, model: Any, summary: str) -> None:
    """POST {path}: one report of type `model`, applied as the worker applies its trainer's."""

    def receive(
        job_id: int,
        body: Annotated[model, Body()],
        caller: CallerDep,
        session: SessionDep,
    ) -> Ack:
        _apply(session, caller, body)
        return Ack(job_id=job_id, received=len(body.logs) if isinstance(body, LogReport) else None)

    receive.__doc__ = summary
    router.post(path, response_model=Ack, name=f"callback_{path.strip('/')}")(public(receive))


_report_route("/started", StartedReport, "The trainer process is up.")
_report_route("/progress", ProgressReport, "Where training is (epoch, batch, phase, ETA).")
_report_route("/metrics", MetricsReport, "One epoch's train and val metrics (non-finite values become null).")
_report_route("/log", LogReport, 'One log entry or a batch (`{"logs": [...]}`).')
_report_route(
    "/completion",
    OutcomeReport,
    "The trainer is done: `completed` with results, `stopped` on request, or `failed` with error_code "
    "and error_message.",
)


@router.post("/checkpoint", response_model=Ack)
@public  # the job token (CallerDep), not an API key
def checkpoint(job_id: int, body: CheckpointReport, caller: CallerDep, db: DatabaseDep) -> Ack:
    """A checkpoint the trainer already wrote: a URI, a storage key, or a file in the runs folder."""
    # Fence before touching storage, and keep no transaction open while a large file is copied.
    with db.session() as session:
        _apply(session, caller, body, fence_only=True)
        prefix = session.get_one(TrainingJob, job_id).storage_prefix
    path, size = _stored_checkpoint(body.path, prefix, body.resolved_kind, body.size_bytes)
    stored = body.model_copy(update={"path": path, "size_bytes": size})
    with db.session() as session:
        _apply(session, caller, stored)
    return Ack(job_id=job_id)


def _stored_checkpoint(path: str, prefix: str, kind: str, size: int | None) -> tuple[str, int | None]:
    if "://" in path:
        return path, size
    storage = get_storage()
    if not path.startswith("/"):
        try:
            exists = path.startswith(prefix + "/") and storage.exists(path)
        except UnsafeKey:
            exists = False
        if not exists:
            raise invalid("path", f"no checkpoint at storage key {path!r} under {prefix}/")
        return path, storage.size(path)
    runs = get_settings().runs_dir.resolve()
    source = Path(path).resolve()
    if not source.is_relative_to(runs) or not source.is_file():
        # The server's own folders are not the caller's business: name the rule, not the path.
        raise invalid("path", "a file path must name an existing file under the server's runs folder")
    key = f"{prefix}/weights/{kind}.pt"
    return key, storage.put_file(key, source)
