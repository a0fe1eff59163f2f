from contextvars import ContextVar
from datetime import datetime
from typing import Any, Literal

from pydantic import AliasPath, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

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


# The smallest image (width, height, path) of the dataset a version request is about, set by the versions
# routes before the request body is validated (app/versions/router.py), unset elsewhere.
SMALLEST_IMAGE: ContextVar[tuple[int, int, str] | None] = ContextVar("smallest_image", default=None)


class Preprocessing(BaseModel):
    """Applied to every split at freeze time, in this order: orient, tile, resize (docs/versions.md)."""

    model_config = ConfigDict(extra="forbid")

    auto_orient: bool = Field(default=False, description="bake the EXIF orientation into pixels and labels")
    tile: str | None = Field(
        default=None, pattern=r"^[1-9][0-9]?x[1-9][0-9]?$", description="COLSxROWS tiles per image"
    )
    tile_min_visibility: float = Field(
        default=0.3, ge=0, le=1, description="drop an object cut by a tile edge below this visible fraction"
    )
    keep_empty_tiles: bool = Field(default=True, description="keep tiles left without any object")
    resize: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$", description="WxH")
    resize_mode: Literal["stretch", "fit"] = Field(
        default="stretch", description="stretch to WxH, or fit inside it keeping the aspect (letterbox)"
    )

    @property
    def active(self) -> bool:
        return self.auto_orient or self.tile is not None or self.resize is not None

    @model_validator(mode="after")
    def _tiles_fit_the_input(self) -> "Preprocessing":
        """Tiles smaller than the resize target, judged on the dataset's smallest image when the route
        knows it (SMALLEST_IMAGE), so that this error comes in the same 422 as every other field's."""
        from app.versions.derive import tile_problem  # pixels and tiles: imported when needed

        smallest = SMALLEST_IMAGE.get()
        if smallest is not None and (problem := tile_problem(*smallest, self)):
            kind = PydanticCustomError("tiles_too_small", "{problem}", {"problem": problem})
            error = InitErrorDetails(type=kind, loc=("tile",), input=self.tile)
            raise ValidationError.from_exception_data(type(self).__name__, [error])
        return self


class Augmentation(BaseModel):
    """Offline augmentation of the training split (docs/versions.md lists the Albumentations behind each)."""

    model_config = ConfigDict(extra="forbid")

    multiplier: int = Field(
        default=1, ge=1, le=10, description="images per training image, original included"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    horizontal_flip: bool = False
    vertical_flip: bool = False
    rotation: float = Field(default=0, ge=0, le=180, description="rotate by up to ±degrees")
    scale: float = Field(
        default=0, ge=0, le=0.9, description="zoom in (crop) or out (pad) by up to ±fraction"
    )
    brightness: float = Field(default=0, ge=0, le=1, description="±fraction")
    contrast: float = Field(default=0, ge=0, le=1, description="±fraction")
    hue: float = Field(default=0, ge=0, le=180, description="±hue, OpenCV units (180: full circle)")
    saturation: float = Field(default=0, ge=0, le=255, description="±saturation units (0-255)")
    blur: int = Field(default=0, ge=0, le=31, description="largest Gaussian kernel (odd, 3+), 0: off")
    noise: float = Field(default=0, ge=0, le=1, description="largest noise std, fraction of 255")
    cutout: int = Field(default=0, ge=0, le=16, description="up to this many erased boxes")
    cutout_size: float = Field(
        default=0.1, gt=0, le=0.5, description="their largest side, fraction of the image"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "Augmentation":
        if self.blur and (self.blur < 3 or self.blur % 2 == 0):
            raise ValueError("blur must be 0 or an odd kernel size of at least 3")
        transforms = self.model_dump(exclude={"multiplier", "seed", "cutout_size"})
        if self.multiplier > 1 and not any(transforms.values()):
            raise ValueError("multiplier above 1 needs at least one transform, or the copies are identical")
        if self.multiplier == 1 and any(transforms.values()):
            raise ValueError("transforms need a multiplier of at least 2 (the original is one of the images)")
        return self

    @property
    def active(self) -> bool:
        return self.multiplier > 1


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
    augmentation: Augmentation = Field(default_factory=Augmentation)
    filters: Filters = Field(default_factory=Filters)


class JobSummary(BaseModel):
    id: int
    name: str
    status: str
    dataset_manifest_sha256: str | None
    created_at: datetime
    augmentation: dict[str, Any] = Field(
        description="the version's offline augmentation beside the job's on-line (Ultralytics) parameters"
    )


class ModelSummary(BaseModel):
    job_id: int
    weights: str


class VersionRead(BaseModel):
    # Read from a DatasetVersion row: `VersionRead.model_validate(version)`. (A docstring would show in
    # the OpenAPI.)
    model_config = ConfigDict(from_attributes=True, validate_by_name=True)

    id: int
    project_id: int
    dataset_id: int
    dataset: str = Field(validation_alias=AliasPath("dataset", "name"))
    number: int
    name: str
    display_name: str | None
    status: str
    failure_reason: str | None
    idempotency_key: str | None
    splits: dict[str, float] | None = Field(validation_alias="split_ratios")
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
    manifest_path: str | None = Field(validation_alias="manifest_key")
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


class PreviewSample(BaseModel):
    file_name: str
    split: str
    width: int
    height: int
    media_type: str
    data: str = Field(description="the image, base64")
    annotations: dict[str, list[dict[str, Any]]] = Field(description="per task, in the manifest's shape")
    lineage: dict[str, Any]


class VersionPreview(BaseModel):
    image_count: int
    annotation_count: int
    split_counts: dict[str, dict[str, int]]
    class_counts: dict[str, dict[str, int]]
    estimated: bool = Field(
        description="augmented copies are counted with their original's annotations, and a rotation, zoom or "
        "cutout may still remove an object when the version is frozen"
    )
    samples: list[PreviewSample]
