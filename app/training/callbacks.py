"""The trainer callback API: what an external trainer reports over HTTP, with TrainerSDK's HttpTransport.

Each request carries the attempt's token (`Authorization: Bearer <token>` or `X-Job-Token`); the
attempt is read from the token and every report goes through `app/training/reports.py`, the same
fenced path as the worker's own trainer. A wrong or missing token is 401; a report for a finished
job or from a stale attempt is 409; neither changes anything.

Checkpoints: HTTP trainers put their weights somewhere first, then report `path`, one of
- a URI (`s3://...`, `https://...`) they uploaded to: recorded as is;
- a storage key under the job's prefix (`projects/<p>/model/training/<name>/...`) that exists: recorded;
- an absolute file path inside the server's runs folder (`$TRAINYARD_DATA_DIR/runs`, for trainers on
  the same machine or a shared filesystem): copied into the job's `weights/<kind>.pt`, as the worker does.
"""

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from app.core.auth import public
from app.core.deps import DatabaseDep, SessionDep
from app.core.errors import AppError, ErrorCode, invalid, not_found
from app.core.events import StaleAttempt
from app.core.security import token_attempt, token_hash
from app.core.settings import get_settings
from app.core.storage import UnsafeKey, get_storage
from app.models import TrainingJob
from app.training import reports
from app.training.schemas import TrainingResults

router = APIRouter(prefix="/api/v1/training/jobs/{job_id}/callback", tags=["trainer callbacks"])

Metrics = dict[str, float]


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int | None = Field(default=None, description="optional; must match the token's attempt")


class StartedReport(Report):
    model_config = ConfigDict(extra="allow")  # pid, hostname, gpu_info, ... whatever the trainer tells


class ProgressReport(Report):
    epoch: int = Field(ge=0)
    total_epochs: int = Field(ge=1, validation_alias=AliasChoices("total_epochs", "total"))
    eta_seconds: float | None = Field(default=None, ge=0)
    phase: str | None = None


class MetricsReport(Report):
    epoch: int = Field(ge=0)
    train: Metrics = Field(default_factory=dict)
    val: Metrics = Field(default_factory=dict)


class CheckpointReport(Report):
    path: str = Field(min_length=1, max_length=2000, validation_alias=AliasChoices("path", "checkpoint_path"))
    kind: Literal["best", "last", "epoch"] | None = None
    is_best: bool | None = None
    epoch: int | None = Field(default=None, ge=0)
    metrics: Metrics = Field(default_factory=dict)
    size_bytes: int | None = Field(
        default=None, ge=0, validation_alias=AliasChoices("size_bytes", "file_size_bytes")
    )

    @property
    def resolved_kind(self) -> str:
        return self.kind or ("best" if self.is_best else "last")


class LogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    message: str = Field(max_length=100_000)
    timestamp: datetime | None = None
    source: Literal["trainer", "sdk", "system"] = "trainer"
    metadata: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _upper_level(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("level"), str):
            return {**data, "level": data["level"].upper()}
        return data


class LogReport(Report):
    """One entry (`level`, `message`, ...) or a batch (`logs: [...]`)."""

    logs: list[LogEntry] = Field(min_length=1, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _single_entry(cls, data: Any) -> Any:
        if isinstance(data, dict) and "logs" not in data:
            entry = {k: v for k, v in data.items() if k != "attempt"}
            return {"logs": [entry]} | ({"attempt": data["attempt"]} if "attempt" in data else {})
        return data


class CompletionReport(Report):
    status: Literal["completed", "failed", "stopped"]
    results: TrainingResults | None = Field(
        default=None, validation_alias=AliasChoices("results", "training_results")
    )
    error_code: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]{0,39}$")
    error_message: str | None = Field(
        default=None, max_length=20_000, validation_alias=AliasChoices("error_message", "message")
    )

    @model_validator(mode="after")
    def _failure_is_explained(self) -> "CompletionReport":
        if self.status == "failed" and (self.error_code is None or self.error_message is None):
            raise ValueError("a failed completion needs error_code and error_message")
        return self


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
        job = session.get(TrainingJob, job_id)
        if job is None:
            raise not_found("training job", job_id)
        stored = job.callback_token_hash
        current = attempt == job.attempt
        if current and stored is not None and not hmac.compare_digest(stored, token_hash(token)):
            raise AppError(401, ErrorCode.UNAUTHORIZED, "the job token was revoked")
    return Caller(job_id, attempt)


CallerDep = Annotated[Caller, Depends(authenticate)]


def _apply(session: Session, caller: Caller, report: Report, apply: Callable[..., Any], *args: Any) -> None:
    """Run one fenced report function; a refused report becomes a 409 and the transaction rolls back."""
    if report.attempt is not None and report.attempt != caller.attempt:
        raise AppError(401, ErrorCode.UNAUTHORIZED, f"the job token was issued for attempt {caller.attempt}")
    try:
        apply(session, caller.job_id, caller.attempt, *args)
    except reports.JobFinished as exc:
        raise AppError(409, ErrorCode.CONFLICT, f"training job {exc.job_id} is finished") from exc
    except StaleAttempt as exc:
        raise AppError(409, ErrorCode.CONFLICT, str(exc)) from exc


@router.post("/started", response_model=Ack)
@public  # the job token (CallerDep), not an API key
def started(job_id: int, body: StartedReport, caller: CallerDep, session: SessionDep) -> Ack:
    """The trainer process is up."""
    _apply(session, caller, body, reports.started, body.model_extra or {})
    return Ack(job_id=job_id)


@router.post("/progress", response_model=Ack)
@public  # the job token (CallerDep), not an API key
def progress(job_id: int, body: ProgressReport, caller: CallerDep, session: SessionDep) -> Ack:
    _apply(session, caller, body, reports.progress, body.epoch, body.total_epochs, body.eta_seconds)
    return Ack(job_id=job_id)


@router.post("/metrics", response_model=Ack)
@public  # the job token (CallerDep), not an API key
def metrics(job_id: int, body: MetricsReport, caller: CallerDep, session: SessionDep) -> Ack:
    _apply(session, caller, body, reports.metrics, body.epoch, body.train, body.val)
    return Ack(job_id=job_id)


@router.post("/log", response_model=Ack)
@public  # the job token (CallerDep), not an API key
def log(job_id: int, body: LogReport, caller: CallerDep, session: SessionDep) -> Ack:
    """One log entry or a batch (`{"logs": [...]}`)."""
    entries = [e.model_dump(mode="json") for e in body.logs]
    _apply(session, caller, body, reports.logs, entries)
    return Ack(job_id=job_id, received=len(entries))


@router.post("/completion", response_model=Ack)
@public  # the job token (CallerDep), not an API key
def completion(job_id: int, body: CompletionReport, caller: CallerDep, session: SessionDep) -> Ack:
    """The trainer is done: `completed` with results, `stopped` on request, or `failed` with
    error_code and error_message."""
    if body.status == "completed":
        results = (body.results or TrainingResults()).model_dump()
        _apply(session, caller, body, reports.complete, results)
    elif body.status == "stopped":
        _apply(session, caller, body, reports.stopped)
    else:
        _apply(session, caller, body, reports.fail, body.error_code, body.error_message)
    return Ack(job_id=job_id)


@router.post("/checkpoint", response_model=Ack)
@public  # the job token (CallerDep), not an API key
def checkpoint(job_id: int, body: CheckpointReport, caller: CallerDep, db: DatabaseDep) -> Ack:
    """A checkpoint the trainer already wrote: a URI, a storage key, or a file in the runs folder."""
    kind = body.resolved_kind
    # Fence before touching storage, and keep no transaction open while a large file is copied.
    with db.session() as session:
        _apply(session, caller, body, reports.ensure_active)
        prefix = session.get_one(TrainingJob, job_id).storage_prefix
    path, size = _stored_checkpoint(body.path, prefix, kind, body.size_bytes)
    with db.session() as session:
        _apply(session, caller, body, reports.checkpoint, kind, path, body.epoch, size, body.metrics)
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
        raise invalid("path", f"a file path must name an existing file under the runs folder {runs}")
    key = f"{prefix}/weights/{kind}.pt"
    return key, storage.put_file(key, source)
