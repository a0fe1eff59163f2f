"""Load and validate a DICE dataset folder, and summarize it in the shape the dataset API returns.

Layout (seed `training-pipeline-design.md` §3.2):

    <root>/images/<split>/<file_name>          split is train | val | test
    <root>/annotations_<task>.json             task is classification | detection | segmentation | pose
    <root>/metadata.json                       optional free-form dataset information

Each annotation file holds `classes` [{id, name}], `images` [{id, file_name, width, height, split,
annotations: [...]}] and may instead (or also) list annotations at the top level, COCO style, joined by
`image_id`. Annotations carry `class_id` and, by task: `bbox` [x, y, w, h] pixels (detection, pose,
optional for segmentation), `segmentation` [[x1, y1, ...], ...] pixel polygons, or `keypoints`
[x, y, v, ...]. A pose file also has `keypoint_schema` {names, skeleton: [[i, j], ...], flip_idx?}; without
`flip_idx`, `left_*`/`right_*` names are paired.
"""

import os
from pathlib import Path
from typing import Any, TypedDict

from app.core import untrusted_json
from app.core.errors import invalid
from app.datasets.dice_parse import ErrorLog, TaskFileParser
from app.datasets.types import SPLITS, DiceDataset, TaskAnnotations, TaskType, annotation_file

METADATA_FILE = "metadata.json"


class TaskSummary(TypedDict):
    file: str
    classes: list[str]
    total_annotations: int


class DatasetSummary(TypedDict):
    task_types: list[str]
    total_images: int
    splits: dict[str, int]
    annotations: dict[str, TaskSummary]


def load_dice(root: Path, *, check_files: bool = True) -> DiceDataset:
    """Read every annotation file under `root`; raise one 422 listing each wrong image or annotation."""
    if not root.is_dir():
        raise invalid("path", f"{root.name or root} is not a folder")
    log = ErrorLog()
    existing = _existing_images(root, log) if check_files else None
    log.existing = existing
    metadata = _read_json(root / METADATA_FILE, log)
    if metadata is not None and not isinstance(metadata, dict):
        log.add(METADATA_FILE, "must be a JSON object")
    tasks: dict[TaskType, TaskAnnotations] = {}
    for task in TaskType:
        path = root / annotation_file(task)
        if not path.is_file():
            continue
        data = _read_json(path, log)
        if data is not None:
            parsed = TaskFileParser(task, existing, log).parse(data)
            if parsed is not None:
                tasks[task] = parsed
    if not tasks and not log.errors:
        names = ", ".join(annotation_file(t) for t in TaskType)
        log.add("dataset", f"no annotation file; expected one of {names}")
    error = log.error()
    if error is not None:
        raise error
    return DiceDataset(root, tasks, metadata if isinstance(metadata, dict) else {})


def summarize(dataset: DiceDataset) -> DatasetSummary:
    """The seed's dataset response: tasks, distinct images and their splits, per-task files and classes."""
    paths: dict[str, str] = {}
    for annotations in dataset.tasks.values():
        for image in annotations.images:
            paths.setdefault(image.path, image.split)
    splits = dict.fromkeys(SPLITS, 0)
    for split in paths.values():
        splits[split] += 1
    return DatasetSummary(
        task_types=[t.value for t in dataset.tasks],
        total_images=len(paths),
        splits=splits,
        annotations={
            t.value: TaskSummary(
                file=a.file, classes=[c.name for c in a.classes], total_annotations=a.total_annotations
            )
            for t, a in dataset.tasks.items()
        },
    )


def _existing_images(root: Path, log: ErrorLog) -> set[str] | None:
    # One directory walk answers every "is this file there?" faster than a stat per image.
    images = root / "images"
    if not images.is_dir():
        log.add("images", "missing folder images/ (images/<split>/<file>)")
        return None
    found: set[str] = set()
    for folder, _dirs, files in os.walk(images):
        rel = Path(folder).relative_to(root).as_posix()
        found.update(f"{rel}/{name}" for name in files)
    return found


def _read_json(path: Path, log: ErrorLog) -> Any:
    if not path.is_file():
        return None
    try:
        return untrusted_json.loads(path.read_bytes())
    except untrusted_json.BadJson as exc:
        log.add(path.name, str(exc))
    return None
