from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.inputs import Id


class Splits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: float = Field(ge=0, le=1)
    val: float = Field(ge=0, le=1)
    test: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> "Splits":
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError("train + val + test must be 1")
        if self.train <= 0 or self.val <= 0:
            raise ValueError("train and val must both be above 0")
        return self


class Preprocessing(BaseModel):
    """Recorded with the version (and in its manifest); the trainer's `imgsz` does the resizing."""

    model_config = ConfigDict(extra="forbid")

    resize: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$")
    auto_orient: bool = False
    tile: str | None = Field(default=None, pattern=r"^[1-9][0-9]?x[1-9][0-9]?$")


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[str] | None = Field(default=None, min_length=1, description="class names to keep")
    min_confidence: float | None = Field(default=None, ge=0, le=1, description="drop machine labels below")
    verified_only: bool = Field(default=False, description="only images a person reviewed")


class VersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    display_name: str | None = Field(default=None, max_length=200)
    dataset_id: Id | None = Field(default=None, description="required when the project has several")
    splits: Splits | None = Field(default=None, description="re-split by these ratios; default: keep")
    split_seed: int = Field(default=0, ge=0, le=2**31 - 1)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    augmentation: dict[str, Any] = Field(default_factory=dict, description="recorded for the trainer")
    filters: Filters = Field(default_factory=Filters)


class JobSummary(BaseModel):
    id: int
    name: str
    status: str
    dataset_manifest_sha256: str | None
    created_at: datetime


class ModelSummary(BaseModel):
    job_id: int
    weights: str


class VersionRead(BaseModel):
    id: int
    project_id: int
    dataset_id: int
    dataset: str
    number: int
    name: str
    display_name: str | None
    status: str
    failure_reason: str | None
    idempotency_key: str | None
    splits: dict[str, float] | None
    split_seed: int
    preprocessing: dict[str, Any]
    augmentation: dict[str, Any]
    filters: dict[str, Any]
    task_types: list[str]
    image_count: int
    annotation_count: int
    split_counts: dict[str, dict[str, int]]
    class_counts: dict[str, dict[str, int]]
    leakage: list[dict[str, Any]]
    manifest_path: str | None
    manifest_sha256: str | None
    snapshot_at: datetime
    created_at: datetime
    archived_at: datetime | None


class VersionDetail(VersionRead):
    jobs: list[JobSummary]
    models: list[ModelSummary]


class VersionList(BaseModel):
    versions: list[VersionRead]
    total: int


class VersionComparison(BaseModel):
    base: int
    other: int
    images_added: list[str]
    images_removed: list[str]
    images_changed: list[str]
    counts: dict[str, int]
    classes_added: list[str]
    classes_removed: list[str]
