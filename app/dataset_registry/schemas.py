from datetime import datetime
from typing import Any

from pydantic import AliasPath, BaseModel, ConfigDict, Field, field_validator

from app.core.inputs import Id
from app.core.naming import NAME_PATTERN
from app.datasets.types import TaskType


class DatasetFromFolder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: Id
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = Field(default=None, max_length=2000)
    source_path: str = Field(min_length=1, max_length=1000, description="a DICE folder, relative to storage")


class TaskAnnotationsRead(BaseModel):
    file: str
    classes: list[str]
    total_annotations: int


class DatasetRead(BaseModel):
    """The seed's dataset shape (training-pipeline-design.md §3.3)."""

    # Read from a Dataset row: `DatasetRead.model_validate(dataset)`. (Docstrings show in the OpenAPI.)
    model_config = ConfigDict(from_attributes=True, validate_by_name=True)

    id: int
    name: str
    description: str | None
    project_id: int
    project: str = Field(validation_alias=AliasPath("project", "name"))
    task_types: list[str]
    total_images: int
    splits: dict[str, int]
    annotations: dict[str, TaskAnnotationsRead]
    total_annotations: int
    storage_path: str = Field(validation_alias="source_key")
    created_at: datetime
    updated_at: datetime


class DatasetPage(BaseModel):
    datasets: list[DatasetRead]
    total: int


class AnnotationBatch(BaseModel):
    """Images (new or already in the dataset) with annotations in the DICE shape of `task_type`'s file.

    `id`s may be left out: images and annotations without one get the next free id. Uploaded files are
    matched to images by `file_name`; an image whose file is already in the dataset needs no upload.
    """

    model_config = ConfigDict(extra="forbid")

    task_type: TaskType
    classes: list[dict[str, Any]] = Field(default_factory=list, description="classes to add, {id, name}")
    keypoint_schema: dict[str, Any] | None = None
    images: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)

    # The merge indexes images by (split, file_name) and classes by id before the DICE parser sees them:
    # those must be plain values (a list there is unhashable). Everything else is the parser's to judge.
    @field_validator("images")
    @classmethod
    def _image_keys(cls, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _plain(images, {"file_name": str, "split": str, "id": int})

    @field_validator("classes")
    @classmethod
    def _class_keys(cls, classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _plain(classes, {"id": int, "name": str})


def _plain(items: list[dict[str, Any]], kinds: dict[str, type]) -> list[dict[str, Any]]:
    for n, item in enumerate(items):
        for key, kind in kinds.items():
            value = item.get(key)
            if value is not None and (type(value) is not kind):
                raise ValueError(f"[{n}].{key} must be a {'string' if kind is str else 'integer'}")
    return items


class AnnotationUploadRead(BaseModel):
    dataset_id: int
    task_type: str
    images_added: int
    images_updated: int
    annotations_added: int
    files_written: int
    dataset: DatasetRead


class SplitStats(BaseModel):
    images: int
    annotations: int


class TaskStats(BaseModel):
    total_images: int
    total_annotations: int
    classes: dict[str, int]
    splits: dict[str, SplitStats]


class AnnotationStats(BaseModel):
    dataset_id: int
    tasks: dict[str, TaskStats]
    first_labeled_at: datetime | None
    last_labeled_at: datetime | None
