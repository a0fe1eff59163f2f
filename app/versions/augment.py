"""Offline augmentation of one image and its annotations with Albumentations, reproducible from a seed.

Boxes go through Albumentations' bbox handling (COCO format, clipped; a box that leaves the image is
dropped); keypoints and polygon vertices go through its keypoint handling. DICE coordinates are
continuous (pixel edges: x in [0, W]) while Albumentations' keypoints are pixel indices, so points go
in half a pixel up-left and come back; that keeps them on the pixels they marked under flips and warps.
Polygons are clipped to the image afterwards (exactly, app.datasets.geometry); a pose keypoint that
leaves the image becomes unlabelled (0, 0, 0), and a horizontal flip swaps left and right keypoints by
the dataset's `flip_idx`. The transforms and their parameters are listed in docs/versions.md.
"""

import copy
import hashlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass, replace
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from app.datasets.geometry import Window, clip_polygon, polygon_area
from app.datasets.types import DiceAnnotation, TaskType
from app.versions.schemas import Augmentation

FILL = 114  # the grey Ultralytics pads with
BBOX_PARAMS: dict[str, Any] = {
    "format": "coco",
    "label_fields": ["box_ids"],
    "clip": True,
    "filter_invalid_bboxes": True,
}
KEYPOINT_PARAMS: dict[str, Any] = {"format": "xy", "label_fields": ["point_ids"], "remove_invisible": False}

Annotations = dict[TaskType, list[DiceAnnotation]]


@cache
def albumentations() -> ModuleType:
    """The library, imported on first use and without torch.

    Albumentations imports its torch helpers whenever torch is installed (it is, for the workers); the API
    process must never load torch, and nothing here uses them. It would also ask PyPI for updates.
    """
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    sys.modules.setdefault("albumentations.pytorch", None)  # type: ignore[arg-type]
    import albumentations

    return albumentations


def transforms(settings: Augmentation) -> list[Any]:
    """The Albumentations pipeline a version's settings stand for, in the order they apply."""
    A = albumentations()
    out: list[Any] = []
    if settings.horizontal_flip:
        out.append(A.HorizontalFlip(p=0.5))
    if settings.vertical_flip:
        out.append(A.VerticalFlip(p=0.5))
    if settings.rotation or settings.scale:
        out.append(
            A.Affine(
                rotate=(-settings.rotation, settings.rotation),
                scale=(1 - settings.scale, 1 + settings.scale),
                keep_ratio=True,
                border_mode=0,
                fill=FILL,
                p=1.0,
            )
        )
    if settings.brightness or settings.contrast:
        out.append(
            A.RandomBrightnessContrast(
                brightness_limit=settings.brightness, contrast_limit=settings.contrast, p=1.0
            )
        )
    if settings.hue or settings.saturation:
        out.append(
            A.HueSaturationValue(
                hue_shift_limit=settings.hue, sat_shift_limit=settings.saturation, val_shift_limit=0, p=1.0
            )
        )
    if settings.blur:
        out.append(A.GaussianBlur(blur_limit=(3, settings.blur), p=0.5))
    if settings.noise:
        out.append(A.GaussNoise(std_range=(0.0, settings.noise), p=0.5))
    if settings.cutout:
        size = (0.02, settings.cutout_size)
        out.append(
            A.CoarseDropout(
                num_holes_range=(1, settings.cutout),
                hole_height_range=size,
                hole_width_range=size,
                fill=FILL,
                p=0.5,
            )
        )
    return out


def variant_seed(seed: int, source_sha256: str, tile: int, variant: int) -> int:
    """The seed of one augmented image: a function of the request's seed and the image, never of the
    order images are processed in (they are processed in parallel)."""
    digest = hashlib.sha256(f"{seed}:{source_sha256}:{tile}:{variant}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Augmented:
    image: np.ndarray
    tasks: Annotations
    applied: list[str]


class Augmenter:
    """Applies one version's augmentation; safe to share between threads (one pipeline per thread)."""

    def __init__(self, settings: Augmentation) -> None:
        self.settings = settings
        self._local = threading.local()
        A = albumentations()
        with warnings.catch_warnings():
            # Colour-only settings leave the box and point processors idle; that is expected.
            warnings.filterwarnings("ignore", "Got processor for", UserWarning)
            self._template = A.Compose(
                transforms(settings),
                bbox_params=A.BboxParams(**BBOX_PARAMS),
                keypoint_params=A.KeypointParams(**KEYPOINT_PARAMS),
                save_applied_params=True,
            )

    def _compose(self) -> Any:
        """This thread's copy: a pipeline holds its random state, which a seed resets per image."""
        compose = getattr(self._local, "compose", None)
        if compose is None:
            compose = self._local.compose = copy.deepcopy(self._template)
        return compose

    def __call__(
        self, image: np.ndarray, tasks: Annotations, flip_idx: tuple[int, ...] | None, seed: int
    ) -> Augmented:
        packed = _Packed(tasks)
        compose = self._compose()
        compose.set_random_seed(seed)
        result = compose(
            image=image,
            bboxes=np.array(packed.boxes, dtype=np.float64).reshape(-1, 4),
            box_ids=packed.box_ids,
            keypoints=np.array(packed.points, dtype=np.float64).reshape(-1, 2) - 0.5,
            point_ids=packed.point_ids,
        )
        applied = [name for name, _ in result["applied_transforms"]]
        out = result["image"]
        boxes = {
            int(i): tuple(float(v) for v in b)
            for i, b in zip(result["box_ids"], result["bboxes"], strict=True)
        }
        points = {
            int(i): (float(p[0]) + 0.5, float(p[1]) + 0.5)
            for i, p in zip(result["point_ids"], result["keypoints"], strict=True)
        }
        flip = flip_idx if "HorizontalFlip" in applied else None
        h, w = out.shape[:2]
        return Augmented(out, packed.unpack(boxes, points, w, h, flip), applied)


class _Packed:
    """Every box and point of an image's annotations in the flat lists Albumentations takes, and back."""

    def __init__(self, tasks: Annotations) -> None:
        self.tasks = tasks
        self.boxes: list[tuple[float, ...]] = []
        self.box_ids: list[int] = []
        self.points: list[tuple[float, float]] = []
        self.point_ids: list[int] = []
        self.box_of: dict[tuple[TaskType, int], int] = {}
        self.points_of: dict[tuple[TaskType, int], list[int]] = {}
        for task, anns in tasks.items():
            for n, ann in enumerate(anns):
                if ann.polygons:
                    self.points_of[(task, n)] = [
                        self._point(x, y) for p in ann.polygons for x, y in _pairs(p)
                    ]
                    continue
                if ann.bbox is not None:
                    self.box_of[(task, n)] = len(self.boxes)
                    self.box_ids.append(len(self.boxes))
                    self.boxes.append(ann.bbox)
                kpts = ann.keypoints
                self.points_of[(task, n)] = [
                    self._point(kpts[k], kpts[k + 1]) for k in range(0, len(kpts), 3)
                ]

    def _point(self, x: float, y: float) -> int:
        self.point_ids.append(len(self.points))
        self.points.append((x, y))
        return len(self.points) - 1

    def unpack(
        self,
        boxes: dict[int, tuple[float, ...]],
        points: dict[int, tuple[float, float]],
        width: int,
        height: int,
        flip_idx: tuple[int, ...] | None,
    ) -> Annotations:
        canvas = Window(0, 0, width, height)
        out: Annotations = {}
        for task, anns in self.tasks.items():
            kept: list[DiceAnnotation] = []
            for n, ann in enumerate(anns):
                moved = self._one(task, n, ann, boxes, points, canvas, flip_idx)
                if moved is not None:
                    kept.append(moved)
            out[task] = kept
        return out

    def _one(
        self,
        task: TaskType,
        n: int,
        ann: DiceAnnotation,
        boxes: dict[int, tuple[float, ...]],
        points: dict[int, tuple[float, float]],
        canvas: Window,
        flip_idx: tuple[int, ...] | None,
    ) -> DiceAnnotation | None:
        ids = self.points_of.get((task, n), [])
        if ann.polygons:
            polygons, k = [], 0
            for p in ann.polygons:
                moved = tuple(v for i in ids[k : k + len(p) // 2] for v in points[i])
                k += len(p) // 2
                clipped = clip_polygon(moved, canvas)
                if len(clipped) >= 6 and polygon_area(clipped) > 0:
                    polygons.append(clipped)
            if not polygons:
                return None
            xs = [v for p in polygons for v in p[0::2]]
            ys = [v for p in polygons for v in p[1::2]]
            bbox = None if ann.bbox is None else (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
            return replace(ann, polygons=tuple(polygons), bbox=bbox)
        if ann.bbox is None:
            return ann  # a classification label: nothing moves
        box = boxes.get(self.box_of[(task, n)])
        if box is None:
            return None
        keypoints: list[tuple[float, float, float]] = []
        for j, i in enumerate(ids):
            x, y = points.get(i, (-1.0, -1.0))
            visible = ann.keypoints[3 * j + 2]
            inside = 0 <= x <= canvas.x1 and 0 <= y <= canvas.y1
            keypoints.append((x, y, visible) if visible and inside else (0.0, 0.0, 0))
        if flip_idx is not None and keypoints:
            keypoints = [keypoints[flip_idx[j]] for j in range(len(keypoints))]
        x, y, w, h = box
        return replace(ann, bbox=(x, y, w, h), keypoints=tuple(v for kp in keypoints for v in kp))


def _pairs(flat: tuple[float, ...]) -> list[tuple[float, float]]:
    return [(flat[k], flat[k + 1]) for k in range(0, len(flat) - 1, 2)]
