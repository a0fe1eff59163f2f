from datetime import datetime
from typing import Any

from pydantic import AliasPath, BaseModel, ConfigDict, Field, field_validator

from app.core.inputs import Id
from app.core.jobs import Framework, TaskType
from app.core.naming import NAME_PATTERN
from app.scheduling.priorities import PriorityName
from app.scheduling.priorities import name as priority_name
from app.scheduling.service import WaitKind
from trainyard_sdk.reports import TrainingResults

Metrics = dict[str, float | None]  # null: the trainer reported a value that is not finite


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(pattern=NAME_PATTERN, description="unique within the project")
    project: str = Field(pattern=NAME_PATTERN, description="project name; created on first use")
    framework: Framework = Framework.ULTRALYTICS
    task_type: TaskType = TaskType.DETECTION
    model_name: str = Field(default="yolo11n", min_length=1, max_length=100)
    dataset_path: str | None = Field(
        default=None, description="YOLO dataset folder with data.yaml: absolute, or relative to storage"
    )
    dataset_id: Id | None = Field(default=None, description="a registered dataset (not available yet)")
    dataset_version_id: Id | None = Field(
        default=None, description="a frozen dataset version of the project, instead of dataset_path"
    )
    checkpoint_model_id: Id | None = Field(
        default=None, description="start from a registered model's weights (fine-tuning)"
    )
    checkpoint_job_id: Id | None = Field(default=None, description="start from another job's best weights")
    weights: str | None = Field(
        default=None, max_length=100, description="start from imported base weights, by name (e.g. yolo11n)"
    )
    config: dict[str, Any] = Field(default_factory=dict, description="overrides of the base config")
    description: str | None = Field(default=None, max_length=2000)
    priority: PriorityName = Field(
        default="normal", description="higher starts first; urgent (admin keys) goes before fair share"
    )
    pool: str | None = Field(
        default=None,
        max_length=60,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        description="the worker pool the job needs (e.g. a100); refused when no worker serves it",
    )


class Progress(BaseModel):
    """Where a running job is (the latest `progress` event's data; docs/architecture.md)."""

    epoch: int
    epochs: int
    batch: int | None
    batches: int | None
    eta_s: float | None
    phase: str


class AttemptRead(BaseModel):
    """Where one attempt of a job ran (recorded when a worker claims it, closed when it ends)."""

    attempt: int
    worker: str | None = Field(description="the worker that claimed it (its id in the workers API)")
    host: str | None = Field(description="the machine that worker runs on (null: an external trainer)")
    pool: str | None = Field(default=None, description="that worker's pool (app/scheduling/)")
    borrowed: bool = Field(
        default=False,
        description="its project was at its GPU quota: it borrowed an idle GPU, the first reclaimed",
    )
    started_at: datetime
    ended_at: datetime | None = Field(default=None, description="null while it runs")
    outcome: str | None = Field(
        default=None, description="completed, failed, stopped, or requeued (the job went on in a new attempt)"
    )


class Waiting(BaseModel):
    position: int = Field(description="its place in the scheduler's line: 1 starts next")
    kind: WaitKind = Field(description="the reason's class, for scripts and alerts")
    reason: str = Field(description="why it waits: quota, pool, higher priority, fair share ...")
    estimated_start_seconds: float | None = Field(
        description="about when it starts, from recent jobs' durations (null: nothing to go by)"
    )


class JobRead(BaseModel):
    # Read from a TrainingJob row: `JobRead.model_validate(job)`. (A docstring would show in the OpenAPI.)
    model_config = ConfigDict(from_attributes=True, validate_by_name=True, protected_namespaces=())

    id: int
    name: str
    project: str = Field(validation_alias=AliasPath("project", "name"))
    framework: str
    task_type: str
    model_name: str
    dataset_path: str | None
    dataset_id: int | None
    dataset_version_id: int | None = None
    dataset_manifest_sha256: str | None = None
    checkpoint_model_id: int | None = None
    parent_job_id: int | None = None
    status: str
    attempt: int
    host: str | None = Field(default=None, description="the host that runs (or ran) the current attempt")
    attempts: list[AttemptRead] = Field(default_factory=list, description="each attempt so far, oldest first")
    current_epoch: int
    total_epochs: int
    progress: Progress | None = None
    priority: str = Field(description="low, normal, high or urgent")
    pool: str | None = Field(default=None, description="the worker pool it needs (null: any)")
    # Queued jobs the scheduler starts before this one (null unless queued); `waiting` says why.
    queue_position: int | None = None
    waiting: Waiting | None = Field(default=None, description="why a queued job waits, and until about when")
    config: dict[str, Any]
    results: TrainingResults | None
    checkpoints: dict[str, str | None]
    error_code: str | None
    error_message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @field_validator("results", mode="before")
    @classmethod
    def _no_results_yet(cls, value: Any) -> Any:
        return value or None  # a job that has not finished has `{}`

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_name(cls, value: Any) -> Any:
        return priority_name(value) if isinstance(value, int) else value

    @field_validator("attempts", mode="before")
    @classmethod
    def _none_recorded(cls, value: Any) -> Any:
        return value or []  # jobs older than the record have null


class JobPage(BaseModel):
    items: list[JobRead]
    total: int
    limit: int
    offset: int


class LogRead(BaseModel):
    # Read from a TrainingLog row: `LogRead.model_validate(log)`.
    model_config = ConfigDict(from_attributes=True, validate_by_name=True)

    id: int
    level: str
    message: str
    timestamp: datetime
    source: str
    metadata: dict[str, Any] | None = Field(validation_alias="meta")


class LogPage(BaseModel):
    logs: list[LogRead]
    total: int
    has_more: bool


class EpochMetrics(BaseModel):
    epoch: int
    train_metrics: Metrics
    val_metrics: Metrics


class MetricsHistory(BaseModel):
    job_id: int
    epochs: list[EpochMetrics]


class CheckpointRead(BaseModel):
    kind: str
    epoch: int | None
    path: str
    size_bytes: int | None
    metrics: Metrics
    attempt: int | None
    recorded_at: datetime


class CheckpointList(BaseModel):
    job_id: int
    best: str | None
    last: str | None
    history: list[CheckpointRead]


class StreamTokenRead(BaseModel):
    token: str
    expires_at: datetime
    events_url: str = Field(description="the job's events URL with the token, for EventSource")
