"""DICE -> the folder layout Ultralytics trains from, written atomically and cached by a checksum.

Detection, segmentation and pose become `images/<split>/...` (links to the DICE files),
`labels/<split>/<stem>.txt` and `data.yaml`; classification becomes ImageFolder `<split>/<class>/...`.
Output depends only on the input (annotations sorted by id, fixed float format), so a cache keyed by a
version's manifest checksum can be trusted.
"""

import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from app.core.errors import AppError, ErrorCode, invalid
from app.datasets.polygons import merge_polygons
from app.datasets.types import (
    SPLITS,
    DiceAnnotation,
    DiceClass,
    DiceDataset,
    DiceImage,
    TaskAnnotations,
    TaskType,
)

# Part of the cache folder name: bump it when the output format changes so old caches are not reused.
CONVERTER_VERSION = 1
MARKER_FILE = ".trainyard-convert.json"
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class LinkMode(StrEnum):
    HARDLINK = "hardlink"
    SYMLINK = "symlink"
    COPY = "copy"


# The errors that mean "this filesystem cannot link here", as opposed to a missing or unreadable image.
_NO_LINKS = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


class _Linker:
    """Places an image in the output without copying its bytes when the filesystem allows it."""

    def __init__(self) -> None:
        self.mode = LinkMode.HARDLINK

    def place(self, src: str, dst: str) -> None:
        if self.mode is LinkMode.HARDLINK:
            try:
                os.link(src, dst)
                return
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                # Another device, or no hard links on this filesystem: stop trying for the rest.
                self.mode = LinkMode.SYMLINK
        if self.mode is LinkMode.SYMLINK:
            target = os.path.realpath(src, strict=True)  # a dangling link would only fail later, in training
            try:
                os.symlink(target, dst)
                return
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                self.mode = LinkMode.COPY
        shutil.copyfile(src, dst)


def yolo_classes(annotations: TaskAnnotations) -> list[DiceClass]:
    """The classes in YOLO index order.

    By DICE id for detection, segmentation and pose. Classification trains from folders, and Ultralytics
    numbers class folders in name order, so there the order is by name and `data.yaml` says so.
    """
    if annotations.task is TaskType.CLASSIFICATION:
        return sorted(annotations.classes, key=lambda c: c.name)
    return sorted(annotations.classes, key=lambda c: c.id)


def convert_to_yolo(dataset: DiceDataset, task: TaskType, dest: Path) -> Path:
    """Write the YOLO layout of one task into `dest` (which must not exist); nothing is left on failure."""
    if dest.exists():
        raise AppError(409, ErrorCode.CONFLICT, f"{dest.name} already exists")
    _build_atomically(dataset, task, dest, key=None)
    return dest


def cache_dir(cache_root: Path, task: TaskType, key: str) -> Path:
    """Where `convert_cached` keeps the conversion of `task` for the dataset whose checksum is `key`."""
    if not key or len(key) > 128 or not set(key) <= _KEY_CHARS:
        raise invalid("key", "must be 1-128 letters, digits, '_' or '-' (a checksum)")
    return cache_root / f"{task.value}-{key}-c{CONVERTER_VERSION}"


def convert_cached(
    dataset: DiceDataset | Callable[[], DiceDataset], task: TaskType, cache_root: Path, key: str
) -> Path:
    """The YOLO layout for `key`, converted on first use; later calls return it without reading the data.

    `dataset` may be a loader so that a cache hit does not even parse the annotation files.
    """
    dest = cache_dir(cache_root, task, key)
    if (dest / MARKER_FILE).is_file():
        return dest
    loaded = dataset() if callable(dataset) else dataset
    cache_root.mkdir(parents=True, exist_ok=True)
    _build_atomically(loaded, task, dest, key=key)
    return dest


def _build_atomically(dataset: DiceDataset, task: TaskType, dest: Path, key: str | None) -> None:
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        stats = _build(dataset.root, dataset.task(task), tmp, dest)
        marker = {"converter_version": CONVERTER_VERSION, "task": task.value, "key": key, **stats}
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if key is None:
                raise AppError(409, ErrorCode.CONFLICT, f"{dest.name} already exists") from exc
            # A concurrent conversion of the same key won the race; its output is identical.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build(root: Path, annotations: TaskAnnotations, tmp: Path, final: Path) -> dict[str, Any]:
    splits = [s for s in SPLITS if any(image.split == s for image in annotations.images)]
    if "train" not in splits or "val" not in splits:
        raise invalid("splits", f"{annotations.file} needs images in both train and val splits, has {splits}")
    classes = yolo_classes(annotations)
    images = sorted(annotations.images, key=lambda image: (image.split, image.file_name))
    linker = _Linker()
    if annotations.task is TaskType.CLASSIFICATION:
        labels = _write_classification(root, images, classes, splits, tmp, linker)
    else:
        index = {c.id: i for i, c in enumerate(classes)}
        labels = _write_labels(root, annotations.task, images, index, tmp, linker)
    _write_data_yaml(annotations, classes, splits, tmp, final)
    return {
        "images": len(images),
        "labels": labels,
        "link_mode": linker.mode.value,
        "names": [c.name for c in classes],
        "class_ids": [c.id for c in classes],
    }


class _Folders:
    """mkdir once per folder: 10,000 images share a handful of folders."""

    def __init__(self) -> None:
        self.made: set[str] = set()

    def ensure(self, folder: str) -> None:
        if folder not in self.made:
            os.makedirs(folder, exist_ok=True)
            self.made.add(folder)


def _write_labels(
    root: Path,
    task: TaskType,
    images: list[DiceImage],
    index: dict[int, int],
    out: Path,
    linker: _Linker,
) -> int:
    rows_of = {
        TaskType.DETECTION: _box_rows,
        TaskType.SEGMENTATION: _polygon_rows,
        TaskType.POSE: _pose_rows,
    }[task]
    # Plain strings and os calls: at 10,000 images pathlib's overhead is a third of the conversion time.
    src_root, out_root = str(root), str(out)
    folders = _Folders()
    label_paths: dict[str, str] = {}
    written = 0
    for image in images:
        image_rel = f"images/{image.split}/{image.file_name}"
        label_rel = f"labels/{image.split}/{image.file_name.rpartition('.')[0]}.txt"
        if label_rel in label_paths:
            # Ultralytics finds a label by the image path minus its suffix: a.jpg and a.png would share one.
            raise invalid("file_name", f"{image_rel} and {label_paths[label_rel]} share {label_rel}")
        label_paths[label_rel] = image_rel
        image_dst, label_dst = f"{out_root}/{image_rel}", f"{out_root}/{label_rel}"
        folders.ensure(os.path.dirname(image_dst))
        folders.ensure(os.path.dirname(label_dst))
        linker.place(f"{src_root}/{image.path}", image_dst)
        anns = image.annotations
        if any(anns[k].id > anns[k + 1].id for k in range(len(anns) - 1)):
            anns = sorted(anns, key=lambda a: a.id)
        # Identical rows are one object labelled twice; Ultralytics drops them too.
        rows = list(dict.fromkeys(rows_of(anns, index, image.width, image.height)))
        fd = os.open(label_dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, "".join(rows).encode())
        finally:
            os.close(fd)
        written += len(rows)
    return written


def _clip(v: float) -> float:
    return 0.0 if v < 0.0 else 1.0 if v > 1.0 else v


def _box(bbox: tuple[float, float, float, float] | None, width: int, height: int) -> tuple[float, ...]:
    assert bbox is not None
    x, y, w, h = bbox
    # Validation allows half a pixel of overshoot; Ultralytics rejects coordinates outside 0..1.
    x1, y1 = _clip(x / width), _clip(y / height)
    x2, y2 = _clip((x + w) / width), _clip((y + h) / height)
    return ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)


def _box_rows(anns: list[DiceAnnotation], index: dict[int, int], width: int, height: int) -> list[str]:
    # Crowd regions are not objects to learn; Ultralytics' COCO converter skips them as well.
    # %-formatting is a third faster than f-strings here, and this runs once per annotation.
    return [
        "%d %.6f %.6f %.6f %.6f\n" % (index[a.class_id], *_box(a.bbox, width, height))  # noqa: UP031
        for a in anns
        if not a.iscrowd
    ]


def _polygon_rows(anns: list[DiceAnnotation], index: dict[int, int], width: int, height: int) -> list[str]:
    rows = []
    for ann in anns:
        if ann.iscrowd or not ann.polygons:
            continue
        if len(ann.polygons) == 1:
            flat = ann.polygons[0]
            points = " ".join(
                f"{_clip(v / (width if k % 2 == 0 else height)):.6f}" for k, v in enumerate(flat)
            )
        else:
            merged = merge_polygons(ann.polygons)
            points = " ".join(
                f"{_clip(px / width):.6f} {_clip(py / height):.6f}" for px, py in merged.tolist()
            )
        rows.append(f"{index[ann.class_id]} {points}\n")
    return rows


def _pose_rows(anns: list[DiceAnnotation], index: dict[int, int], width: int, height: int) -> list[str]:
    rows = []
    for ann in anns:
        kpts = ann.keypoints
        # An instance without a single labelled keypoint teaches nothing (COCO evaluation ignores it too).
        if ann.iscrowd or not any(kpts[2::3]):
            continue
        box = " ".join(f"{v:.6f}" for v in _box(ann.bbox, width, height))
        points = " ".join(
            f"{_clip(kpts[k] / width):.6f} {_clip(kpts[k + 1] / height):.6f} {int(kpts[k + 2])}"
            for k in range(0, len(kpts), 3)
        )
        rows.append(f"{index[ann.class_id]} {box} {points}\n")
    return rows


def _write_classification(
    root: Path,
    images: list[DiceImage],
    classes: list[DiceClass],
    splits: list[str],
    out: Path,
    linker: _Linker,
) -> int:
    names = {c.id: c.name for c in classes}
    # Every class folder exists in every split, so Ultralytics sees all classes even if one has no image.
    for split in splits:
        for c in classes:
            (out / split / c.name).mkdir(parents=True)
    folders = _Folders()
    placed = 0
    for image in images:
        labels = sorted({ann.class_id for ann in image.annotations})
        if not labels:
            continue  # unlabelled images have no folder to go to
        if len(labels) > 1:
            raise invalid(
                "annotations",
                f"images/{image.split}/{image.file_name} has {len(labels)} classes; "
                "classification training takes one class per image",
            )
        dst = out / image.split / names[labels[0]] / image.file_name
        folders.ensure(str(dst.parent))
        linker.place(str(root / image.path), str(dst))
        placed += 1
    return placed


def _write_data_yaml(
    annotations: TaskAnnotations, classes: list[DiceClass], splits: list[str], out: Path, final: Path
) -> None:
    is_cls = annotations.task is TaskType.CLASSIFICATION
    data: dict[str, Any] = {"path": str(final.resolve())}
    for split in splits:
        data[split] = split if is_cls else f"images/{split}"
    data["nc"] = len(classes)
    data["names"] = {i: c.name for i, c in enumerate(classes)}
    # The DICE id behind each YOLO index, so predictions can be mapped back to the dataset's classes.
    data["dice_class_ids"] = {i: c.id for i, c in enumerate(classes)}
    schema = annotations.keypoints
    if schema is not None:
        data["kpt_shape"] = [len(schema.names), 3]
        data["flip_idx"] = list(schema.flip_idx)
        data["kpt_names"] = {i: list(schema.names) for i in range(len(classes))}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None)
    (out / "data.yaml").write_text(text, encoding="utf-8")
