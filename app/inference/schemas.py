from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.inputs import Id


class ImageResult(BaseModel):
    """One image: `detections` (boxes; + `polygon` for segmentation, `keypoints` for pose) or `top_k`."""

    name: str | None
    width: int
    height: int
    detections: list[dict[str, Any]] | None = None
    top_k: list[dict[str, Any]] | None = None
    speed_ms: dict[str, float] = Field(default_factory=dict)


class InferenceRead(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    model_id: int
    task: str
    worker: str
    cache_hit: bool
    results: list[ImageResult]
    timing_ms: dict[str, float]


class InferenceJobRead(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), extra="allow")

    id: str
    model_id: int
    status: str
    images: int
    chunks: int
    chunks_done: int
    progress: float
    errors: list[dict[str, Any]]
    results: list[ImageResult] | None = None


class WorkerModelsAction(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    action: Literal["load", "unload"]
    model_id: Id
