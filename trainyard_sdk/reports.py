"""The trainer report protocol, defined once (docs/trainer-contract.md).

Every message a trainer sends about its job is one of these models, whichever way it travels: a JSON
line on the worker's pipe, or a POST to the callback API. The SDK builds them, the worker parses its
pipe with `parse_report`, the callback API takes them as request bodies, and one function applies them
to the job (app/training/reports.py: `apply_report`).

The bounds are part of the contract: an epoch beyond MAX_EPOCH, a timestamp outside 1970..2200 or an
oversized message is refused (422 over HTTP; a failed job over the pipe). Metrics that are not finite
(NaN, Infinity) are kept as null, so every event built from a report is valid JSON.
"""

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_EPOCH = 100_000
MAX_MESSAGE = 100_000
MAX_LOG_BATCH = 1000
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class ReportType(StrEnum):
    STARTED = "started"
    PROGRESS = "progress"
    METRICS = "metrics"
    CHECKPOINT = "checkpoint"
    LOG = "log"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


# A trainer's last word: the worker applies it only once the trainer process has exited.
OUTCOMES = frozenset({ReportType.COMPLETED, ReportType.FAILED, ReportType.STOPPED})


class Phase(StrEnum):
    SETUP = "setup"  # before the first batch
    TRAIN = "train"
    VAL = "val"
    FINAL = "final"  # the final validation after the last epoch


Epoch = Annotated[int, Field(ge=0, le=MAX_EPOCH)]


def finite_or_none(value: Any) -> Any:
    """NaN and ±Infinity become None (JSON has no such numbers); numpy and torch scalars plain floats;
    everything else is left alone."""
    if not isinstance(value, int | float | str | bytes | None) and hasattr(value, "__float__"):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


FiniteFloat = Annotated[float | None, BeforeValidator(finite_or_none)]
Metrics = dict[Annotated[str, Field(max_length=200)], FiniteFloat]


class Report(BaseModel):
    """Fields every report may carry. `attempt` is optional over HTTP (the token names the attempt)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    type: ReportType
    attempt: int | None = Field(default=None, ge=1, le=MAX_EPOCH, description="must match the token's")

    @model_validator(mode="before")
    @classmethod
    def _type_from_route(cls, data: Any) -> Any:
        # The callback API's `/completion` says `status`; the route fills `type` for the others.
        if isinstance(data, dict) and "type" not in data and "status" in data:
            data = {**data, "type": data["status"]}
            del data["status"]
        return data


class StartedReport(Report):
    """The trainer process is up; anything else it tells about itself (pid, device...) is kept."""

    model_config = ConfigDict(extra="allow")

    type: Literal[ReportType.STARTED] = ReportType.STARTED


class ProgressReport(Report):
    """Where training is: epoch `epoch` of `epochs` (1-based, 0 during setup), batch `batch` of
    `batches` within it (None at an epoch's end), in `phase`. Sent at most about once a second."""

    type: Literal[ReportType.PROGRESS] = ReportType.PROGRESS
    epoch: Epoch
    epochs: int = Field(ge=1, le=MAX_EPOCH, validation_alias=AliasChoices("epochs", "total_epochs", "total"))
    batch: int | None = Field(default=None, ge=0, le=10**9)
    batches: int | None = Field(default=None, ge=1, le=10**9)
    eta_s: FiniteFloat = Field(default=None, ge=0, validation_alias=AliasChoices("eta_s", "eta_seconds"))
    phase: Phase = Phase.TRAIN

    def event_data(self) -> dict[str, Any]:
        """The `progress` event's data and the job record's `progress` (docs/architecture.md)."""
        return self.model_dump(mode="json", include={"epoch", "epochs", "batch", "batches", "eta_s", "phase"})


class MetricsReport(Report):
    type: Literal[ReportType.METRICS] = ReportType.METRICS
    epoch: Epoch
    train: Metrics = Field(default_factory=dict)
    val: Metrics = Field(default_factory=dict)


class CheckpointReport(Report):
    """Under a worker, `path` is a file the trainer will not touch again (the worker moves it into
    storage); over HTTP, a URI or storage key it uploaded to (app/training/callbacks.py)."""

    type: Literal[ReportType.CHECKPOINT] = ReportType.CHECKPOINT
    path: str = Field(min_length=1, max_length=2000, validation_alias=AliasChoices("path", "checkpoint_path"))
    kind: Literal["best", "last", "epoch"] | None = None
    is_best: bool | None = None
    epoch: Epoch | None = None
    metrics: Metrics = Field(default_factory=dict)
    size_bytes: int | None = Field(
        default=None, ge=0, le=2**62, validation_alias=AliasChoices("size_bytes", "file_size_bytes")
    )

    @property
    def resolved_kind(self) -> str:
        return self.kind or ("best" if self.is_best else "last")


class LogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    message: str = Field(max_length=MAX_MESSAGE)
    timestamp: datetime | None = None
    source: Literal["trainer", "sdk", "system"] = "trainer"
    metadata: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _upper_level(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("level"), str):
            return {**data, "level": data["level"].upper()}
        return data

    @field_validator("timestamp")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if not EARLIEST <= moment < LATEST:
            raise ValueError(f"must lie between {EARLIEST.year} and {LATEST.year}")
        return moment.astimezone(UTC)


class LogReport(Report):
    """One entry (`level`, `message`, ...) or a batch (`logs: [...]`)."""

    type: Literal[ReportType.LOG] = ReportType.LOG
    logs: list[LogEntry] = Field(min_length=1, max_length=MAX_LOG_BATCH)

    @model_validator(mode="before")
    @classmethod
    def _single_entry(cls, data: Any) -> Any:
        if isinstance(data, dict) and "logs" not in data:
            envelope = {k: data[k] for k in ("type", "attempt") if k in data}
            return {**envelope, "logs": [{k: v for k, v in data.items() if k not in envelope}]}
        return data


class TrainingResults(BaseModel):
    """What a finished training reports about itself (the job's `results`)."""

    best_epoch: Epoch | None = None
    best_metrics: Metrics = Field(default_factory=dict)
    final_metrics: Metrics = Field(default_factory=dict)
    training_time_seconds: FiniteFloat = Field(default=None, ge=0)
    epochs_completed: Epoch | None = None
    model_info: dict[str, Any] | None = Field(default=None, description="class names, imgsz, versions")


class CompletedReport(Report):
    type: Literal[ReportType.COMPLETED] = ReportType.COMPLETED
    results: TrainingResults = Field(
        default_factory=TrainingResults, validation_alias=AliasChoices("results", "training_results")
    )
    # Files of the trainer's machine (worker only; an HTTP trainer uploads what it wants kept).
    artifacts: dict[str, str] = Field(default_factory=dict)

    @field_validator("results", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class FailedReport(Report):
    type: Literal[ReportType.FAILED] = ReportType.FAILED
    error_code: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,39}$")
    message: str = Field(max_length=20_000, validation_alias=AliasChoices("message", "error_message"))


class StoppedReport(Report):
    """The trainer honoured a stop request; its last reported checkpoint is where a resume starts."""

    type: Literal[ReportType.STOPPED] = ReportType.STOPPED


def _tag(data: Any) -> str | None:
    if isinstance(data, dict):
        tag = data.get("type", data.get("status"))
        return str(tag) if tag is not None else None
    return str(getattr(data, "type", "")) or None


AnyReport = Annotated[
    Annotated[StartedReport, Tag(ReportType.STARTED)]
    | Annotated[ProgressReport, Tag(ReportType.PROGRESS)]
    | Annotated[MetricsReport, Tag(ReportType.METRICS)]
    | Annotated[CheckpointReport, Tag(ReportType.CHECKPOINT)]
    | Annotated[LogReport, Tag(ReportType.LOG)]
    | Annotated[CompletedReport, Tag(ReportType.COMPLETED)]
    | Annotated[FailedReport, Tag(ReportType.FAILED)]
    | Annotated[StoppedReport, Tag(ReportType.STOPPED)],
    Discriminator(
        _tag,
        custom_error_type="invalid_report",
        custom_error_message=f"type must be one of {', '.join(ReportType)}",
    ),
]
# The callback API's `/completion` body: one of the three outcomes, told apart by `status` (or `type`).
OutcomeReport = Annotated[
    Annotated[CompletedReport, Tag(ReportType.COMPLETED)]
    | Annotated[FailedReport, Tag(ReportType.FAILED)]
    | Annotated[StoppedReport, Tag(ReportType.STOPPED)],
    Discriminator(
        _tag,
        custom_error_type="invalid_outcome",
        custom_error_message="status (or type) must be completed, failed or stopped",
    ),
]

_ANY: TypeAdapter[AnyReport] = TypeAdapter(AnyReport)


class BadReport(ValueError):
    """A report line that is not one of the protocol's messages."""


def parse_report(raw: bytes | str | dict[str, Any]) -> AnyReport:
    """One report from a pipe line (JSON) or a decoded object; BadReport says what was wrong."""
    try:
        if isinstance(raw, dict):
            return _ANY.validate_python(raw)
        return _ANY.validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'report'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise BadReport(problems) from exc
