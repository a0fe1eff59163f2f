"""Request and response shapes of the config endpoints."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.configs.catalog import ModelSource
from app.configs.schema import Group
from app.configs.validation import Mode
from app.core.jobs import Framework, TaskType


class CatalogModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    framework: str
    source: ModelSource = Field(
        description="architecture: built from a model YAML; checkpoint: our own weights"
    )
    scale: str | None
    description: str
    tasks: list[str]
    model_yamls: dict[str, str | None] = Field(description="task -> Ultralytics model YAML")


class ParamRead(BaseModel):
    name: str
    type: str
    default: Any
    description: str
    group: Group
    user_mode_allowed: bool
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: list[str] | None = None
    nullable: bool = False
    multiple_of: int | None = None


class ReservedKeyRead(BaseModel):
    name: str
    reason: str


class TaskSchemaRead(BaseModel):
    task: str
    params: list[ParamRead]


class ConfigSchemaRead(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    framework: str
    user_mode_keys: list[str]
    reserved: list[ReservedKeyRead] = Field(description="keys the platform sets; rejected in a config")
    tasks: list[TaskSchemaRead]


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    framework: Framework = Framework.ULTRALYTICS
    task: TaskType
    model_name: str | None = Field(default=None, description="fills model= in the CLI preview")
    base_config: dict[str, Any] | None = Field(
        default=None, description="a preset laid over the shipped default (e.g. an earlier run's values)"
    )
    overrides: dict[str, Any] = Field(default_factory=dict)
    mode: Mode = "developer"


class ResolvedConfigRead(BaseModel):
    values: dict[str, Any] = Field(
        description="the Ultralytics train arguments, minus what the platform sets"
    )
    yaml: str
    cli_preview: str
    warnings: list[str]
