"""A frozen version as a file: every image with its SHA-256 and split, every annotation, per task.

Pure functions over app.datasets values (no database, no torch): `select` applies a version's filters,
`placement` assigns splits, `freeze` counts and renders the manifest bytes, `dataset_from_manifest`
turns a manifest back into the DiceDataset the converter reads. Splits are seeded by the image's
content hash, so an image keeps its split in every version with the same seed, and identical bytes
can never be put in two splits by the split assignment (leakage only comes from the source's own
splits, and is reported). Generated images (app.versions.derive) carry their source in `lineage`.
"""

import hashlib
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import invalid
from app.datasets.types import (
    SPLITS,
    DiceAnnotation,
    DiceClass,
    DiceDataset,
    DiceImage,
    KeypointSchema,
    TaskAnnotations,
    TaskType,
)

# /2: no version number or timestamp in the file (content only), and `lineage` on generated images.
# dataset_from_manifest reads both.
FORMAT = "trainyard-dataset-version/2"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Filters:
    classes: tuple[str, ...] | None = None
    min_confidence: float | None = None
    verified_only: bool = False


@dataclass
class Selection:
    """What passes the filters: per task the kept classes and images (annotations already filtered)."""

    tasks: dict[TaskType, TaskAnnotations]
    paths: list[str]  # every kept image (source-relative path), sorted

    @property
    def annotation_count(self) -> int:
        return sum(t.total_annotations for t in self.tasks.values())


@dataclass
class Frozen:
    manifest: bytes
    sha256: str
    image_count: int
    annotation_count: int
    split_counts: dict[str, dict[str, int]]
    class_counts: dict[str, dict[str, int]]
    leakage: list[dict[str, Any]] = field(default_factory=list)


def select(dataset: DiceDataset, filters: Filters) -> Selection:
    """Apply the filters; an image stays if it keeps an annotation, or had none and no class was asked."""
    wanted = set(filters.classes) if filters.classes is not None else None
    if wanted is not None:
        known = {c.name for t in dataset.tasks.values() for c in t.classes}
        unknown = sorted(wanted - known)
        if unknown:
            raise invalid("filters.classes", f"unknown class(es) {unknown}; the dataset has {sorted(known)}")
    tasks: dict[TaskType, TaskAnnotations] = {}
    paths: set[str] = set()
    for task, source in dataset.tasks.items():
        classes = [c for c in source.classes if wanted is None or c.name in wanted]
        ids = {c.id for c in classes}
        images = []
        for image in source.images:
            if filters.verified_only and not image.verified:
                continue
            anns = [
                a for a in image.annotations if a.class_id in ids and _confident(a, filters.min_confidence)
            ]
            if anns or (not image.annotations and wanted is None):
                images.append(_with(image, anns))
        if images:
            tasks[task] = TaskAnnotations(task, source.file, classes, images, source.keypoints)
            paths.update(image.path for image in images)
    return Selection(tasks, sorted(paths))


def _confident(ann: DiceAnnotation, minimum: float | None) -> bool:
    # A label without a score was made by a person and passes any threshold.
    return minimum is None or ann.confidence is None or ann.confidence >= minimum


def _with(image: DiceImage, anns: list[DiceAnnotation]) -> DiceImage:
    return DiceImage(
        image.id, image.file_name, image.width, image.height, image.split, image.path, anns, image.verified
    )


def hash_files(root: Path, paths: list[str], threads: int = 4) -> dict[str, str]:
    """SHA-256 of each file. Threads take whole batches (a task per file costs more than hashing a
    small image); hashlib releases the GIL on large buffers, so big images overlap their I/O."""

    def digest(batch: list[str]) -> list[str]:
        out = []
        for rel in batch:
            with open(os.path.join(root, rel), "rb") as f:
                out.append(hashlib.file_digest(f, "sha256").hexdigest())
        return out

    size = max(1, min(512, len(paths) // threads + 1))
    batches = [paths[i : i + size] for i in range(0, len(paths), size)]
    with ThreadPoolExecutor(threads) as pool:
        digests = [d for batch in pool.map(digest, batches) for d in batch]
    return dict(zip(paths, digests, strict=True))


def assign_split(sha256: str, ratios: dict[str, float], seed: int) -> str:
    """A stable split for an image: a seeded hash of its content against the cumulative ratios."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{sha256}".encode()).digest()[:8], "big") / 2**64
    edge = 0.0
    for split in SPLITS:
        edge += ratios.get(split, 0.0)
        if u < edge:
            return split
    return next(s for s in reversed(SPLITS) if ratios.get(s, 0.0) > 0)


def placement(
    selection: Selection, hashes: dict[str, str], ratios: dict[str, float] | None, seed: int
) -> dict[str, tuple[str, str]]:
    """Each kept image's (split, file name in the version): its own split, or a seeded re-split."""
    if ratios is None:
        placed: dict[str, tuple[str, str]] = {}
        for kept in selection.tasks.values():
            for image in kept.images:
                placed.setdefault(image.path, (image.split, image.path.split("/", 2)[2]))
        return placed
    # Re-split images keep their source folder in the name: two sources' a.jpg cannot collide.
    return {p: (assign_split(hashes[p], ratios, seed), p.split("/", 1)[1]) for p in selection.paths}


def counts(selection: Selection) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """(images per split, annotations per class), per task."""
    split_counts: dict[str, dict[str, int]] = {}
    class_counts: dict[str, dict[str, int]] = {}
    for task, annotations in selection.tasks.items():
        split_counts[task.value] = dict(Counter(i.split for i in annotations.images))
        names = {c.id: c.name for c in annotations.classes}
        counted = Counter(names[a.class_id] for i in annotations.images for a in i.annotations)
        class_counts[task.value] = {c.name: counted[c.name] for c in annotations.classes}
    return split_counts, class_counts


def freeze(
    selection: Selection,
    *,
    header: dict[str, Any],
    hashes: dict[str, str],
    placed: dict[str, tuple[str, str]],
    lineage: dict[str, dict[str, Any]] | None = None,
) -> Frozen:
    """Count and render the manifest of `selection`, given the images' hashes and placement.

    The manifest holds only what the version contains (no timestamp, no number), so the same request on
    the same data gives the same bytes and checksum. Generated images (`lineage`) name their source.
    """
    lineage = lineage or {}
    images = []
    for p in selection.paths:
        entry: dict[str, Any] = {
            "path": p,
            "sha256": hashes[p],
            "split": placed[p][0],
            "file_name": placed[p][1],
        }
        if p in lineage:
            entry["lineage"] = lineage[p]
        images.append(entry)
    leakage = _leakage(images)
    body = {
        "format": FORMAT,
        **header,
        "images": images,
        "tasks": {t.value: _task_json(selection.tasks[t]) for t in sorted(selection.tasks)},
        "leakage": leakage,
    }
    data = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    placed_selection = Selection(
        {t: with_splits(a, placed) for t, a in selection.tasks.items()}, selection.paths
    )
    split_counts, class_counts = counts(placed_selection)
    return Frozen(
        manifest=data,
        sha256=hashlib.sha256(data).hexdigest(),
        image_count=len(images),
        annotation_count=selection.annotation_count,
        split_counts=split_counts,
        class_counts=class_counts,
        leakage=leakage,
    )


def with_splits(annotations: TaskAnnotations, placed: dict[str, tuple[str, str]]) -> TaskAnnotations:
    """The task's images in the splits the version assigns them."""
    images = [
        DiceImage(i.id, i.file_name, i.width, i.height, placed[i.path][0], i.path, i.annotations, i.verified)
        for i in annotations.images
    ]
    return TaskAnnotations(
        annotations.task, annotations.file, annotations.classes, images, annotations.keypoints
    )


def _leakage(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Identical bytes in two splits; the variants of one source image count as that image."""
    by_hash: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for image in images:
        source = image.get("lineage", {}).get("source", {}).get("sha256")
        by_hash[source or image["sha256"]].append(image)
    return [
        {
            "sha256": h,
            "splits": sorted({i["split"] for i in group}),
            "paths": sorted({i.get("lineage", {}).get("source", {}).get("path", i["path"]) for i in group}),
        }
        for h, group in sorted(by_hash.items())
        if len({i["split"] for i in group}) > 1
    ]


def _task_json(annotations: TaskAnnotations) -> dict[str, Any]:
    schema = annotations.keypoints
    return {
        "file": annotations.file,
        "classes": [
            {"id": c.id, "name": c.name, "color": c.color, "supercategory": c.supercategory}
            for c in annotations.classes
        ],
        "keypoint_schema": None
        if schema is None
        else {
            "names": list(schema.names),
            "skeleton": [list(p) for p in schema.skeleton],
            "flip_idx": list(schema.flip_idx),
        },
        "images": [
            {
                "id": i.id,
                "path": i.path,
                "width": i.width,
                "height": i.height,
                "annotations": [annotation_json(a) for a in sorted(i.annotations, key=lambda a: a.id)],
            }
            for i in sorted(annotations.images, key=lambda i: i.path)
        ],
    }


def annotation_json(a: DiceAnnotation) -> dict[str, Any]:
    """One annotation as the manifest writes it (to 1e-6 px: float noise stays out of the bytes)."""
    out: dict[str, Any] = {"id": a.id, "class_id": a.class_id}
    if a.bbox is not None:
        out["bbox"] = _rounded(a.bbox)
    if a.polygons:
        out["segmentation"] = [_rounded(p) for p in a.polygons]
    if a.keypoints:
        out["keypoints"] = _rounded(a.keypoints)
    if a.iscrowd:
        out["iscrowd"] = 1
    if a.confidence is not None:
        out["confidence"] = a.confidence
    return out


def _rounded(values: tuple[float, ...]) -> list[float]:
    return [round(v, 6) for v in values]


def under_dataset(image: dict[str, Any], source: str = "source") -> str:
    """Where a manifest's image lies in its dataset's folder: a generated one (`lineage`) at its own path
    (under `generated/`), any other in the source folder."""
    return str(image["path"]) if "lineage" in image else f"{source}/{image['path']}"


def dataset_from_manifest(manifest: dict[str, Any], source_root: Path) -> DiceDataset:
    """The DiceDataset a manifest describes (validated when it was frozen; not validated again).

    Source images are under the dataset's `source/`; generated ones (with `lineage`) under its
    `generated/`, so the dataset's root is the folder holding both.
    """
    root = source_root.parent
    where = source_root.name
    placed = {i["path"]: (i["split"], i["file_name"], under_dataset(i, where)) for i in manifest["images"]}
    tasks: dict[TaskType, TaskAnnotations] = {}
    for name, task in manifest["tasks"].items():
        schema = task.get("keypoint_schema")
        images = []
        for i in task["images"]:
            split, file_name, path = placed[i["path"]]
            anns = [
                DiceAnnotation(
                    a["id"],
                    a["class_id"],
                    tuple(a["bbox"]) if "bbox" in a else None,
                    tuple(tuple(p) for p in a.get("segmentation", ())),
                    tuple(a.get("keypoints", ())),
                    bool(a.get("iscrowd", 0)),
                    a.get("confidence"),
                )
                for a in i["annotations"]
            ]
            images.append(DiceImage(i["id"], file_name, i["width"], i["height"], split, path, anns))
        tasks[TaskType(name)] = TaskAnnotations(
            TaskType(name),
            task["file"],
            [DiceClass(c["id"], c["name"], c.get("color"), c.get("supercategory")) for c in task["classes"]],
            images,
            None
            if schema is None
            else KeypointSchema(
                tuple(schema["names"]), tuple(tuple(p) for p in schema["skeleton"]), tuple(schema["flip_idx"])
            ),
        )
    return DiceDataset(root, tasks, {})


def compare(old: dict[str, Any], new: dict[str, Any], limit: int = 1000) -> dict[str, Any]:
    """What changed from `old` to `new`: images (by path, and changed bytes) and classes (by name)."""
    a = {i["path"]: i["sha256"] for i in old["images"]}
    b = {i["path"]: i["sha256"] for i in new["images"]}
    added = sorted(b.keys() - a.keys())
    removed = sorted(a.keys() - b.keys())
    changed = sorted(p for p in a.keys() & b.keys() if a[p] != b[p])
    ca = {c["name"] for t in old["tasks"].values() for c in t["classes"]}
    cb = {c["name"] for t in new["tasks"].values() for c in t["classes"]}
    return {
        "images_added": added[:limit],
        "images_removed": removed[:limit],
        "images_changed": changed[:limit],
        "counts": {
            "added": len(added),
            "removed": len(removed),
            "changed": len(changed),
            "unchanged": len(a.keys() & b.keys()) - len(changed),
        },
        "classes_added": sorted(cb - ca),
        "classes_removed": sorted(ca - cb),
    }
