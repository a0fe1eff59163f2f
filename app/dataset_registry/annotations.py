"""Add images and annotations to a registered dataset in batches, and count what it holds.

A batch is validated as part of the whole task file it extends (the same parser as registration, so
every error names the image or annotation and the reason) before any file is touched. Images are
immutable once in the dataset: a different file under an existing name is refused, so a frozen
version's checksums stay true. The dataset row is locked for the upload, serializing batches.
"""

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import UploadFile
from sqlalchemy.orm import Session

from app.core.db import on_rollback
from app.core.errors import AppError, ErrorCode, FieldError, invalid, invalid_fields
from app.core.storage import get_local_storage, publish
from app.dataset_registry import files, schemas, service
from app.datasets.dice import load_dice
from app.datasets.dice_parse import ErrorLog, TaskFileParser
from app.datasets.types import SPLITS, TaskType, annotation_file
from app.inference.images import ImageRefused, image_size
from app.models.base import as_utc, utcnow

MAX_FILE_BYTES = 200 * 1024**2
# A dataset image may be larger than what inference takes (a satellite tile); past this it is a bomb.
MAX_PIXELS = 100_000_000


@dataclass
class _Plan:
    data: dict[str, Any]
    uploads: dict[str, bytes] = field(default_factory=dict)  # images/<split>/<name> -> bytes to write
    added: int = 0
    updated: int = 0
    annotations: int = 0


def upload(
    session: Session, dataset_id: int, batch: schemas.AnnotationBatch, uploads: list[UploadFile]
) -> schemas.AnnotationUploadRead:
    dataset = service.get_dataset(session, dataset_id, for_update=True)
    source = service.source_dir(dataset)
    task_file = source / annotation_file(batch.task_type)
    old_bytes = task_file.read_bytes() if task_file.is_file() else None
    current = json.loads(old_bytes) if old_bytes is not None else _skeleton(batch)
    plan = _merge(current, batch)
    _attach_files(plan, batch, uploads, source)
    existing = _existing_files(source) | set(plan.uploads)
    log = ErrorLog()
    TaskFileParser(batch.task_type, existing, log).parse(plan.data)
    error = log.error()
    if error is not None:
        raise error
    written = _write(source, task_file, plan, old_bytes)
    on_rollback(session, lambda: _undo(task_file, old_bytes, written))
    try:
        service.refresh_summary(dataset, source)
        _publish(task_file, written)
    except BaseException:
        _undo(task_file, old_bytes, written)
        raise
    session.flush()
    return schemas.AnnotationUploadRead(
        dataset_id=dataset.id,
        task_type=batch.task_type.value,
        images_added=plan.added,
        images_updated=plan.updated,
        annotations_added=plan.annotations,
        files_written=len(written),
        dataset=service.to_read(dataset),
    )


def _skeleton(batch: schemas.AnnotationBatch) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format_version": "1.0",
        "task_type": batch.task_type.value,
        "classes": [],
        "images": [],
    }
    if batch.task_type is TaskType.POSE:
        data["keypoint_schema"] = batch.keypoint_schema
    return data


def _merge(current: dict[str, Any], batch: schemas.AnnotationBatch) -> _Plan:
    if not isinstance(current.get("images"), list) or not isinstance(current.get("classes"), list):
        raise invalid(annotation_file(batch.task_type), "the stored file has no images/classes lists")
    data = {**current, "images": [dict(i) for i in current["images"]], "classes": list(current["classes"])}
    if batch.keypoint_schema is not None:
        if current.get("keypoint_schema") not in (None, batch.keypoint_schema):
            raise invalid("keypoint_schema", "differs from the dataset's; it cannot change in a batch")
        data["keypoint_schema"] = batch.keypoint_schema
    known = {c.get("id"): c.get("name") for c in data["classes"] if isinstance(c, dict)}
    for i, cls in enumerate(batch.classes):
        cid = cls.get("id")
        if cid in known and known[cid] != cls.get("name"):
            raise invalid(
                f"classes[{i}]", f"class {cid} is {known[cid]!r} in the dataset, not {cls.get('name')!r}"
            )
        if cid not in known:
            data["classes"].append(cls)
            known[cid] = cls.get("name")
    plan = _Plan(data)
    by_path = {(i.get("split"), i.get("file_name")): i for i in data["images"]}
    next_image = max([i["id"] for i in data["images"] if type(i.get("id")) is int] + [0]) + 1
    next_ann = (
        max(
            [
                a["id"]
                for i in data["images"]
                for a in i.get("annotations") or []
                if isinstance(a, dict) and type(a.get("id")) is int
            ]
            + [0]
        )
        + 1
    )
    now = utcnow().isoformat()
    for item in batch.images:
        anns = item.get("annotations") or []
        if not isinstance(anns, list):
            raise invalid("images.annotations", "must be a list")
        target = by_path.get((item.get("split"), item.get("file_name")))
        if target is None:
            target = {**item, "annotations": []}
            if "id" not in target:
                target["id"], next_image = next_image, next_image + 1
            meta = target.get("metadata")
            target["metadata"] = {"labeled_at": now, **(meta if isinstance(meta, dict) else {})}
            data["images"].append(target)
            by_path[(item.get("split"), item.get("file_name"))] = target
            plan.added += 1
        else:
            target["annotations"] = list(target.get("annotations") or [])
            plan.updated += 1
        for ann in anns:
            if isinstance(ann, dict) and "id" not in ann:
                ann = {"id": next_ann, **ann}
                next_ann += 1
            if isinstance(ann, dict):
                ann = {**ann, "image_id": target.get("id")}
            target["annotations"].append(ann)
            plan.annotations += 1
    return plan


def _attach_files(
    plan: _Plan, batch: schemas.AnnotationBatch, uploads: list[UploadFile], source: Path
) -> None:
    images = {str(i.get("file_name")): i for i in batch.images}
    errors: list[FieldError] = []
    for upload in uploads:
        name = upload.filename or ""
        image = images.get(name)
        if image is None:
            errors.append(FieldError(f"files:{name}", "no image in the batch has this file_name"))
            continue
        content = upload.file.read(MAX_FILE_BYTES + 1)
        if len(content) > MAX_FILE_BYTES:
            errors.append(FieldError(f"files:{name}", f"larger than {MAX_FILE_BYTES} bytes"))
            continue
        rel = f"images/{image.get('split')}/{name}"
        if image.get("split") not in SPLITS or any(p in ("", ".", "..") for p in name.split("/")):
            continue  # the parser reports the bad split or name; nothing is written
        problem = _image_problem(content, image)
        target = source / rel
        if problem is None and target.is_file():
            same = hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(content).digest()
            problem = None if same else "a different file with this name is already in the dataset"
            if same:
                continue
        if problem is not None:
            errors.append(FieldError(f"files:{name}", problem))
            continue
        plan.uploads[rel] = content
    if errors:
        raise invalid_fields(errors)


def _image_problem(content: bytes, image: dict[str, Any]) -> str | None:
    try:
        size = image_size(content, MAX_PIXELS)
    except ImageRefused as exc:
        return str(exc)
    if size != (image.get("width"), image.get("height")):
        return (
            f"the file is {size[0]}x{size[1]}, the annotation says {image.get('width')}x{image.get('height')}"
        )
    return None


def _existing_files(source: Path) -> set[str]:
    found: set[str] = set()
    for folder, _dirs, names in os.walk(source / "images"):
        rel = Path(folder).relative_to(source).as_posix()
        found.update(f"{rel}/{name}" for name in names)
    return found


def _write(source: Path, task_file: Path, plan: _Plan, old_bytes: bytes | None) -> list[Path]:
    written: list[Path] = []
    try:
        for rel, content in sorted(plan.uploads.items()):
            target = source / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(target, "xb") as out:
                    out.write(content)
            except FileExistsError as exc:
                raise AppError(409, ErrorCode.CONFLICT, f"{rel} appeared meanwhile") from exc
            written.append(target)
        files.write_atomic(task_file, json.dumps(plan.data, ensure_ascii=False).encode())
    except BaseException:
        _undo(task_file, old_bytes, written)
        raise
    return written


def _undo(task_file: Path, old_bytes: bytes | None, written: list[Path]) -> None:
    for path in written:
        path.unlink(missing_ok=True)
    if old_bytes is None:
        task_file.unlink(missing_ok=True)
    else:
        files.write_atomic(task_file, old_bytes)
    _publish(task_file, written)


def _publish(task_file: Path, written: list[Path]) -> None:
    """The storage backend follows the local folder (app.core.storage.publish)."""
    local = get_local_storage()
    publish(local, [path.relative_to(local.root).as_posix() for path in [task_file, *written]])


def stats(session: Session, dataset_id: int) -> schemas.AnnotationStats:
    """Counts per class and split for each task file, and the range of `metadata.labeled_at`."""
    dataset = service.get_dataset(session, dataset_id)
    source = service.source_dir(dataset)
    loaded = load_dice(source, check_files=False)
    tasks: dict[str, schemas.TaskStats] = {}
    for task, annotations in loaded.tasks.items():
        names = {c.id: c.name for c in annotations.classes}
        classes: Counter[str] = Counter()
        splits = {s: schemas.SplitStats(images=0, annotations=0) for s in SPLITS}
        for image in annotations.images:
            splits[image.split].images += 1
            splits[image.split].annotations += len(image.annotations)
            classes.update(names[a.class_id] for a in image.annotations)
        tasks[task.value] = schemas.TaskStats(
            total_images=len(annotations.images),
            total_annotations=annotations.total_annotations,
            classes={c.name: classes[c.name] for c in annotations.classes},
            splits=splits,
        )
    moments = sorted(_labeled_at(source, loaded.tasks))
    return schemas.AnnotationStats(
        dataset_id=dataset.id,
        tasks=tasks,
        first_labeled_at=moments[0] if moments else None,
        last_labeled_at=moments[-1] if moments else None,
    )


def _labeled_at(source: Path, tasks: dict[TaskType, Any]) -> list[datetime]:
    # The typed model keeps no labeler metadata; the dates come from the raw files.
    found = []
    for task in tasks:
        data = json.loads((source / annotation_file(task)).read_bytes())
        for image in data.get("images") or []:
            meta = image.get("metadata") if isinstance(image, dict) else None
            raw = meta.get("labeled_at") if isinstance(meta, dict) else None
            if isinstance(raw, str):
                try:
                    moment = as_utc(datetime.fromisoformat(raw))
                except ValueError:
                    continue
                if moment is not None:
                    found.append(moment)
    return found
