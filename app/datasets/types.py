"""The DICE dataset as typed values: what `load_dice` returns and what the converter reads."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import invalid
from app.core.jobs import TaskType


def annotation_file(task: TaskType) -> str:
    """The DICE file holding `task`'s annotations (docs/datasets.md)."""
    return f"annotations_{task.value}.json"


SPLITS = ("train", "val", "test")

# The labeler writes `task_type` inside each file in its own words (the seed's detection file says
# "object_detection"); the file name decides the task and these spellings are accepted as agreeing with it.
TASK_ALIASES: dict[str, TaskType] = {
    "classification": TaskType.CLASSIFICATION,
    "image_classification": TaskType.CLASSIFICATION,
    "detection": TaskType.DETECTION,
    "object_detection": TaskType.DETECTION,
    "segmentation": TaskType.SEGMENTATION,
    "instance_segmentation": TaskType.SEGMENTATION,
    "pose": TaskType.POSE,
    "pose_estimation": TaskType.POSE,
    "keypoint_detection": TaskType.POSE,
}


@dataclass(frozen=True, slots=True)
class DiceClass:
    id: int
    name: str
    color: str | None = None
    supercategory: str | None = None


@dataclass(slots=True)
class DiceAnnotation:
    """One label. Coordinates are pixels; which fields are set depends on the task."""

    id: int
    class_id: int
    bbox: tuple[float, float, float, float] | None = None  # x, y, w, h (top-left corner)
    polygons: tuple[tuple[float, ...], ...] = ()  # segmentation: each x1, y1, x2, y2, ...
    keypoints: tuple[float, ...] = ()  # pose: x, y, v per keypoint (COCO visibility 0/1/2)
    iscrowd: bool = False
    # A model's score for machine-made labels (`confidence` or `attributes.confidence`); None for people's.
    confidence: float | None = None


@dataclass(slots=True)
class DiceImage:
    """An image as one task file lists it.

    `split` is what the image is used for; `path` (relative to the dataset root) is where its bytes are.
    They agree in a DICE folder (`images/<split>/<file_name>`), but a frozen version may reassign splits
    without moving files, so the converter reads `split` for the destination and `path` for the source.
    """

    id: int
    file_name: str
    width: int
    height: int
    split: str
    path: str
    annotations: list[DiceAnnotation] = field(default_factory=list)
    # Reviewed by a person (`metadata.reviewed_at` / `reviewed_by`, or `verified: true`).
    verified: bool = False


@dataclass(frozen=True, slots=True)
class KeypointSchema:
    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    flip_idx: tuple[int, ...]


@dataclass(slots=True)
class TaskAnnotations:
    """The content of one `annotations_<task>.json`."""

    task: TaskType
    file: str
    classes: list[DiceClass]
    images: list[DiceImage]
    keypoints: KeypointSchema | None = None

    @property
    def total_annotations(self) -> int:
        return sum(len(image.annotations) for image in self.images)


@dataclass(slots=True)
class DiceDataset:
    root: Path
    tasks: dict[TaskType, TaskAnnotations]
    metadata: dict[str, Any] = field(default_factory=dict)

    def task(self, task: TaskType) -> TaskAnnotations:
        """The annotations of one task, or a 422 naming the file that is missing."""
        found = self.tasks.get(task)
        if found is None:
            raise invalid("task_type", f"the dataset has no {annotation_file(task)}")
        return found
