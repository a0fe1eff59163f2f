from datetime import datetime
from typing import Any

from pydantic import AliasPath, BaseModel, ConfigDict, Field

from app.core.inputs import Id
from app.core.jobs import TaskType
from app.models.weights import ExportFormat


class Lineage(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    job_id: int | None
    dataset_path: str | None
    dataset_version_id: int | None
    dataset_manifest_sha256: str | None
    parent_model_id: int | None
    base_weights_sha256: str | None = None
    config: dict[str, Any]
    package_versions: dict[str, str]


class ModelRead(BaseModel):
    """A registered model as the API shows it, read straight off its row (`ModelRead.model_validate(row)`)."""

    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    name: str
    project_id: int
    project: str = Field(validation_alias=AliasPath("project", "name"))
    framework: str
    task_type: str
    format: str
    architecture: str
    status: str
    status_reason: str | None
    weights_key: str
    exported_key: str | None
    size_bytes: int | None
    imgsz: int | None
    class_names: list[str]
    best_epoch: int | None
    metrics: dict[str, float | None]  # null: a value the trainer reported was not finite
    lineage: Lineage
    job_status: str
    validated_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ModelPage(BaseModel):
    items: list[ModelRead]
    total: int
    limit: int
    offset: int


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_id: Id
    task_type: TaskType | None = Field(default=None, description="must match the model's task when given")


class DeploymentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    task_type: str
    action: str
    model_id: int | None
    previous_model_id: int | None
    created_at: datetime


class DeploymentState(BaseModel):
    """The active model of a project for one task, and how it got there (newest first)."""

    model_config = ConfigDict(protected_namespaces=())

    project_id: int
    task_type: str
    active_model: ModelRead | None
    history: list[DeploymentRead]


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: ExportFormat


class ExportRead(BaseModel):
    """A model in another format; `details` has the opset, package versions and the box cross-check."""

    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    model_id: int
    format: str
    status: str
    status_reason: str | None
    size_bytes: int | None
    sha256: str | None
    details: dict[str, Any]
    created_at: datetime
    updated_at: datetime
