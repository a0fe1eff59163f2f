"""Parse one `annotations_<task>.json` into typed values, recording every problem with its location.

Problems are collected rather than raised one at a time so a user fixes a whole file in one round trip;
the field names point into the JSON (`annotations_detection.json:images[3].annotations[0].bbox`).
"""

import math
from typing import Any

from app.core.errors import AppError, ErrorCode, FieldError, invalid_fields
from app.datasets.types import (
    SPLITS,
    TASK_ALIASES,
    DiceAnnotation,
    DiceClass,
    DiceImage,
    KeypointSchema,
    TaskAnnotations,
    TaskType,
    annotation_file,
)

MAX_ERRORS = 100
SHOWN_ERRORS = 5  # problems quoted in the one-line detail
# Labelers round coordinates; a box ending at 640.0000001 in a 640-pixel image is not a user error.
EDGE_TOLERANCE = 0.5
# The image types Ultralytics reads (its IMG_FORMATS); anything else would be skipped silently in training.
IMAGE_SUFFIXES = frozenset(
    {"bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp"}
)
_NUMBER = (int, float)


class ErrorLog:
    """Collects field errors, keeping the first `limit` so a broken 100k-annotation file stays readable.

    The error it raises is summarised for people (docs/datasets.md): the first few problems, how many
    there are, and the likely cause when one pattern explains them all (say, every `file_name` starting
    with its split), while `errors` keeps the first `limit` for programs.
    """

    def __init__(self, limit: int = MAX_ERRORS) -> None:
        self.errors: list[FieldError] = []
        self.dropped = 0
        self.limit = limit
        self.total = 0  # kept and dropped, so callers can tell cheaply whether a check added any
        self.missing: list[tuple[str, str]] = []  # (split, file_name) of each image not found
        self.existing: set[str] | None = None  # every file under images/, when the folder was read

    def add(self, field: str, reason: str) -> None:
        self.total += 1
        if len(self.errors) < self.limit:
            self.errors.append(FieldError(field, reason))
        else:
            self.dropped += 1

    def add_missing(self, field: str, split: str, name: str) -> None:
        self.missing.append((split, name))
        self.add(field, f"missing file images/{split}/{name}")

    def error(self) -> AppError | None:
        if not self.errors:
            return None
        errors = list(self.errors)
        if self.dropped:
            errors.append(FieldError("dataset", f"{self.dropped} more problems not listed"))
        cause = self.likely_cause()
        if cause is not None:
            errors.insert(0, FieldError("dataset", f"likely cause: {cause}"))
        if self.total <= SHOWN_ERRORS and cause is None:
            return invalid_fields(errors)
        first = "; ".join(f"{e.field}: {e.reason}" for e in self.errors[:SHOWN_ERRORS])
        detail = f"{self.total} problems in the dataset"
        detail += f"; likely cause: {cause}" if cause else ""
        detail += f"; the first {min(SHOWN_ERRORS, self.total)}: {first}"
        return AppError(422, ErrorCode.VALIDATION_ERROR, detail, errors)

    def likely_cause(self) -> str | None:
        """One explanation for every problem, when the problems are all missing images that share it."""
        if len(self.missing) < 2 or len(self.missing) != self.total:
            return None
        if all(name.startswith(f"{split}/") for split, name in self.missing):
            split, name = self.missing[0]
            return (
                f"file_name includes the split: file_name is relative to images/<split>/, so "
                f"'{name}' with split '{split}' is looked for at images/{split}/{name}; "
                f"write '{name.removeprefix(split + '/')}'"
            )
        if self.existing is None:
            return None
        by_name: dict[str, str] = {}
        for path in self.existing:
            by_name.setdefault(path.rpartition("/")[2], path)
        elsewhere = [by_name.get(name.rpartition("/")[2]) for _split, name in self.missing]
        if all(elsewhere):
            split, name = self.missing[0]
            return (
                f"the images are not where file_name and split point: images/{split}/{name} is at "
                f"{elsewhere[0]}; files go in images/<split>/<file_name>"
            )
        return None


def _num(value: object) -> bool:
    # bool is an int subclass; `true` as a coordinate is a labeler bug, not 1.0.
    return type(value) in _NUMBER and math.isfinite(value)  # type: ignore[arg-type]


def _g(values: Any) -> str:
    return "[" + ", ".join(f"{v:g}" if _num(v) else repr(v) for v in values) + "]"


def _safe_relative(name: str) -> bool:
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _positive_int(value: object) -> bool:
    return type(value) is int and value > 0


class TaskFileParser:
    """State for one file: its classes, keypoint schema, and the ids seen so far."""

    def __init__(self, task: TaskType, existing: set[str] | None, log: ErrorLog) -> None:
        self.task = task
        self.file = annotation_file(task)
        self.existing = existing
        self.log = log
        self.classes: dict[int, DiceClass] = {}
        self.kpt_names: tuple[str, ...] = ()
        self.annotation_ids: set[int] = set()

    def parse(self, data: object) -> TaskAnnotations | None:
        if not isinstance(data, dict):
            self.log.add(self.file, "must be a JSON object")
            return None
        declared = data.get("task_type")
        if declared is not None and TASK_ALIASES.get(str(declared)) is not self.task:
            self.log.add(f"{self.file}:task_type", f"'{declared}' does not match the file name ({self.task})")
        classes = self._classes(data.get("classes"))
        schema = self._keypoint_schema(data.get("keypoint_schema")) if self.task is TaskType.POSE else None
        images = self._images(data.get("images"))
        self._flat_annotations(data.get("annotations"), images)
        return TaskAnnotations(self.task, self.file, classes, [i for i in images if i is not None], schema)

    def _classes(self, raw: object) -> list[DiceClass]:
        where = f"{self.file}:classes"
        if not isinstance(raw, list) or not raw:
            self.log.add(where, "must be a non-empty list of {id, name}")
            return []
        names: set[str] = set()
        for i, item in enumerate(raw):
            cid = item.get("id") if isinstance(item, dict) else None
            name = item.get("name") if isinstance(item, dict) else None
            if type(cid) is not int or cid < 0:
                self.log.add(f"{where}[{i}].id", f"must be an integer >= 0, got {cid!r}")
            elif cid in self.classes:
                self.log.add(f"{where}[{i}].id", f"duplicate class id {cid}")
            elif not isinstance(name, str) or not name.strip():
                self.log.add(f"{where}[{i}].name", "must be a non-empty string")
            elif not _safe_relative(name) or "/" in name:
                # Classification turns class names into folder names.
                self.log.add(f"{where}[{i}].name", f"'{name}' cannot be a folder name (no '/', '\\', '..')")
            elif name in names:
                self.log.add(f"{where}[{i}].name", f"duplicate class name '{name}'")
            else:
                assert isinstance(item, dict)
                names.add(name)
                color, sup = item.get("color"), item.get("supercategory")
                self.classes[cid] = DiceClass(
                    cid,
                    name,
                    color if isinstance(color, str) else None,
                    sup if isinstance(sup, str) else None,
                )
        return sorted(self.classes.values(), key=lambda c: c.id)

    def _keypoint_schema(self, raw: object) -> KeypointSchema | None:
        where = f"{self.file}:keypoint_schema"
        names = raw.get("names") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not isinstance(names, list) or not names:
            self.log.add(where, "pose needs {names: [...], skeleton: [[i, j], ...], flip_idx?: [...]}")
            return None
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            self.log.add(f"{where}.names", "must be distinct non-empty strings")
            return None
        k = len(names)
        skeleton: list[tuple[int, int]] = []
        for i, pair in enumerate(raw.get("skeleton") or []):
            if not (
                isinstance(pair, list) and len(pair) == 2 and all(type(p) is int and 0 <= p < k for p in pair)
            ):
                self.log.add(f"{where}.skeleton[{i}]", f"must be a pair of keypoint indexes 0..{k - 1}")
            else:
                skeleton.append((pair[0], pair[1]))
        flip = raw.get("flip_idx")
        flip_idx = tuple(flip) if isinstance(flip, list) else _flip_from_names(names)
        if (
            not all(type(j) is int for j in flip_idx)
            or sorted(flip_idx) != list(range(k))
            or any(flip_idx[flip_idx[i]] != i for i in range(k))
        ):
            self.log.add(
                f"{where}.flip_idx", f"must pair up keypoints 0..{k - 1} (a permutation, its own inverse)"
            )
            return None
        self.kpt_names = tuple(names)
        return KeypointSchema(tuple(names), tuple(skeleton), flip_idx)

    def _images(self, raw: object) -> list[DiceImage | None]:
        if not isinstance(raw, list):
            self.log.add(f"{self.file}:images", "must be a list")
            return []
        seen_ids: set[int] = set()
        seen_paths: dict[str, int] = {}
        images: list[DiceImage | None] = []
        for i, item in enumerate(raw):
            image = self._image(i, item, seen_ids, seen_paths)
            images.append(image)
            anns = item.get("annotations") if isinstance(item, dict) else None
            if image is not None and anns is not None:
                where = f"{self.file}:images[{i}].annotations"
                if not isinstance(anns, list):
                    self.log.add(where, "must be a list")
                    continue
                for j, ann in enumerate(anns):
                    parsed = self._annotation(ann, image, f"{where}[{j}]", nested=True)
                    if parsed is not None:
                        image.annotations.append(parsed)
        return images

    def _image(
        self, i: int, item: object, seen_ids: set[int], seen_paths: dict[str, int]
    ) -> DiceImage | None:
        where = f"{self.file}:images[{i}]"
        if not isinstance(item, dict):
            self.log.add(where, "must be an object")
            return None
        iid, name, split = item.get("id"), item.get("file_name"), item.get("split")
        width, height = item.get("width"), item.get("height")
        ok = True
        if type(iid) is not int:
            self.log.add(f"{where}.id", f"must be an integer, got {iid!r}")
            ok = False
        elif iid in seen_ids:
            self.log.add(f"{where}.id", f"duplicate image id {iid}")
            ok = False
        else:
            seen_ids.add(iid)
        if split not in SPLITS:
            self.log.add(f"{where}.split", f"bad split name {split!r} (train|val|test)")
            ok = False
        if not _positive_int(width) or not _positive_int(height):
            self.log.add(
                f"{where}.width", f"width and height must be positive integers, got {width!r}x{height!r}"
            )
            ok = False
        if not isinstance(name, str) or not _safe_relative(name):
            self.log.add(
                f"{where}.file_name", f"must be a relative path inside images/<split>/, got {name!r}"
            )
            return None
        if name.rpartition(".")[2].lower() not in IMAGE_SUFFIXES:
            self.log.add(f"{where}.file_name", f"unsupported image type '{name}'")
            ok = False
        path = f"images/{split}/{name}"
        if ok and self.existing is not None and path not in self.existing:
            self.log.add_missing(f"{where}.file_name", str(split), name)
            ok = False
        if path in seen_paths:
            self.log.add(f"{where}.file_name", f"duplicate file {path} (also images[{seen_paths[path]}])")
            ok = False
        seen_paths[path] = i
        if not ok:
            return None
        assert isinstance(iid, int) and isinstance(width, int) and isinstance(height, int)
        meta = item.get("metadata")
        verified = item.get("verified") is True or (
            isinstance(meta, dict) and bool(meta.get("reviewed_at") or meta.get("reviewed_by"))
        )
        return DiceImage(iid, name, width, height, str(split), path, verified=verified)

    def _flat_annotations(self, raw: object, images: list[DiceImage | None]) -> None:
        # COCO-style files keep annotations in one top-level list joined by image_id; accept that too.
        if raw is None:
            return
        if not isinstance(raw, list):
            self.log.add(f"{self.file}:annotations", "must be a list")
            return
        by_id = {image.id: image for image in images if image is not None}
        for k, ann in enumerate(raw):
            where = f"{self.file}:annotations[{k}]"
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            image = by_id.get(image_id) if type(image_id) is int else None
            if image is None:
                self.log.add(f"{where}.image_id", f"unknown image_id {image_id!r}")
                continue
            parsed = self._annotation(ann, image, where, nested=False)
            if parsed is not None:
                image.annotations.append(parsed)

    def _annotation(self, ann: object, image: DiceImage, where: str, nested: bool) -> DiceAnnotation | None:
        if not isinstance(ann, dict):
            self.log.add(where, "must be an object")
            return None
        aid, cid = ann.get("id"), ann.get("class_id")
        errors_before = self.log.total
        if type(aid) is not int:
            self.log.add(f"{where}.id", f"must be an integer, got {aid!r}")
        elif aid in self.annotation_ids:
            self.log.add(f"{where}.id", f"duplicate annotation id {aid}")
        else:
            self.annotation_ids.add(aid)
        cls = self.classes.get(cid) if type(cid) is int else None
        if cls is None:
            self.log.add(f"{where}.class_id", f"unknown class_id {cid!r}")
        elif "class_name" in ann and ann["class_name"] != cls.name:
            self.log.add(
                f"{where}.class_name", f"{ann['class_name']!r} is not the name of class {cid} ('{cls.name}')"
            )
        if nested and "image_id" in ann and ann["image_id"] != image.id:
            self.log.add(
                f"{where}.image_id", f"{ann['image_id']!r} is not the enclosing image's id {image.id}"
            )
        result = DiceAnnotation(aid, cid, iscrowd=bool(ann.get("iscrowd", 0)))  # type: ignore[arg-type]
        result.confidence = self._confidence(ann, where)
        if self.task is not TaskType.CLASSIFICATION:
            self._geometry(ann, image, where, result)
        # Only an annotation without any problem is kept (and any problem means the load is refused).
        return result if self.log.total == errors_before else None

    def _confidence(self, ann: dict[str, Any], where: str) -> float | None:
        attributes = ann.get("attributes")
        raw = ann.get("confidence")
        if raw is None and isinstance(attributes, dict):
            raw = attributes.get("confidence")
        if raw is None:
            return None
        if not _num(raw) or not 0.0 <= raw <= 1.0:
            self.log.add(f"{where}.confidence", f"must be a number between 0 and 1, got {raw!r}")
            return None
        return float(raw)

    def _geometry(self, ann: dict[str, Any], image: DiceImage, where: str, out: DiceAnnotation) -> None:
        if ann.get("bbox") is not None or self.task is not TaskType.SEGMENTATION:
            out.bbox = self._bbox(ann.get("bbox"), ann.get("bbox_format", "xywh"), image, where)
        if self.task is TaskType.SEGMENTATION:
            out.polygons = self._polygons(ann.get("segmentation"), image, f"{where}.segmentation")
        elif self.task is TaskType.POSE:
            out.keypoints = self._keypoints(ann.get("keypoints"), image, f"{where}.keypoints")

    def _bbox(
        self, box: object, fmt: object, image: DiceImage, where: str
    ) -> tuple[float, float, float, float] | None:
        where += ".bbox"
        # Written out rather than with all()/generators: this runs once per annotation, 100,000s of times.
        if type(box) is not list or len(box) != 4:
            self.log.add(where, f"must be [x, y, w, h] in pixels, got {box!r}")
            return None
        x, y, w, h = box
        if not (
            type(x) in _NUMBER
            and type(y) in _NUMBER
            and type(w) in _NUMBER
            and type(h) in _NUMBER
            and math.isfinite(x + y + w + h)  # any NaN or infinity makes the sum non-finite
        ):
            self.log.add(where, f"must be [x, y, w, h] in pixels, got {box!r}")
            return None
        if fmt != "xywh":
            self.log.add(where, f"bbox_format {fmt!r} is not supported (xywh)")
            return None
        if w <= 0 or h <= 0:
            self.log.add(where, f"bbox {_g(box)} has no area (w and h must be > 0)")
        elif (
            x < -EDGE_TOLERANCE
            or y < -EDGE_TOLERANCE
            or x + w > image.width + EDGE_TOLERANCE
            or (y + h > image.height + EDGE_TOLERANCE)
        ):
            self.log.add(where, f"bbox [x,y,w,h] {_g(box)} outside the {image.width}x{image.height} image")
        else:
            return (x, y, w, h)
        return None

    def _polygons(self, raw: object, image: DiceImage, where: str) -> tuple[tuple[float, ...], ...]:
        if not isinstance(raw, list) or not raw or not all(isinstance(p, list) for p in raw):
            self.log.add(where, "must be a list of polygons [[x1, y1, x2, y2, x3, y3, ...], ...]")
            return ()
        polygons: list[tuple[float, ...]] = []
        for p, poly in enumerate(raw):
            if len(poly) < 6 or len(poly) % 2 or not all(_num(v) for v in poly):
                self.log.add(
                    f"{where}[{p}]", "a polygon needs at least 3 points as x1, y1, x2, y2, ... numbers"
                )
                continue
            xs, ys = poly[0::2], poly[1::2]
            if (
                min(xs) < -EDGE_TOLERANCE
                or min(ys) < -EDGE_TOLERANCE
                or (max(xs) > image.width + EDGE_TOLERANCE or max(ys) > image.height + EDGE_TOLERANCE)
            ):
                self.log.add(f"{where}[{p}]", f"polygon outside the {image.width}x{image.height} image")
                continue
            polygons.append(tuple(float(v) for v in poly))
        return tuple(polygons)

    def _keypoints(self, raw: object, image: DiceImage, where: str) -> tuple[float, ...]:
        k = len(self.kpt_names)
        if not k:
            return ()  # the schema is broken and already reported
        if not isinstance(raw, list) or len(raw) != 3 * k or not all(_num(v) for v in raw):
            self.log.add(where, f"must be {3 * k} numbers (x, y, v for each of {k} keypoints)")
            return ()
        for n in range(k):
            x, y, v = raw[3 * n : 3 * n + 3]
            if v not in (0, 1, 2):
                self.log.add(where, f"keypoint {n} ({self.kpt_names[n]}) visibility {v!r} is not 0, 1 or 2")
                return ()
            if v and not (
                -EDGE_TOLERANCE <= x <= image.width + EDGE_TOLERANCE
                and -EDGE_TOLERANCE <= y <= image.height + EDGE_TOLERANCE
            ):
                self.log.add(
                    where,
                    f"keypoint {n} ({self.kpt_names[n]}) at ({x:g}, {y:g}) outside the "
                    f"{image.width}x{image.height} image",
                )
                return ()
        return tuple(float(v) for v in raw)


def _flip_from_names(names: list[str]) -> tuple[int, ...]:
    """Pair `left_*` with `right_*` so a horizontal-flip augmentation swaps them; others map to themselves."""
    index = {name: i for i, name in enumerate(names)}
    flip = []
    for i, name in enumerate(names):
        twin = name.replace("left", "\0").replace("right", "left").replace("\0", "right")
        flip.append(index.get(twin, i))
    return tuple(flip)
