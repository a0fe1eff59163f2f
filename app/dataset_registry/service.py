"""Register DICE datasets (from an uploaded ZIP or a folder already in storage), list and read them.

A dataset's files live under `projects/<project slug>/datasets/<dataset slug>/source/`, a folder the
platform owns (a registered folder is copied in, with hard links where possible), so a frozen version
can trust that what it hashed does not change. The API works on them in its local storage folder and
publishes them to the storage backend (app.core.storage.publish) when that is S3, for workers elsewhere.
Registration is all or nothing: a refused archive or dataset, a name conflict, or a rolled-back
transaction removes every file written for it, here and in the backend.
"""

import logging
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import String, cast, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.db import on_rollback
from app.core.errors import AppError, ErrorCode, FieldError, invalid
from app.core.naming import is_valid_name, slugify
from app.core.pagination import paginate
from app.core.storage import LocalStorage, get_local_storage, publish_tree, unpublish_tree
from app.core.visibility import get_visible, missing, path_visible
from app.dataset_registry import files, schemas
from app.datasets.dice import load_dice, summarize
from app.datasets.extract import ExtractLimits, extract_release
from app.datasets.types import TaskType
from app.models import Dataset, Project
from app.projects.service import get_project

log = logging.getLogger("app.backend")

# Uploads are untrusted: the archive limits of app.datasets.extract, and a cap on the upload itself.
EXTRACT_LIMITS = ExtractLimits()
MAX_UPLOAD_BYTES = 20 * 1024**3
UPLOAD_TMP = ".uploads"


def _discard(folder: Path) -> None:
    local = get_local_storage()
    files.remove_folder(folder, local.root)
    try:
        unpublish_tree(local, folder.relative_to(local.root).as_posix())
    except Exception:
        log.warning("could not remove %s from the storage backend", folder.name, exc_info=True)


def _conflict(name: str) -> AppError:
    reason = f"a dataset named {name!r} (or with the same slug) exists in this project"
    return AppError(409, ErrorCode.CONFLICT, f"name: {reason}", [FieldError("name", reason)])


def _prepare(session: Session, project_id: int, name: str) -> tuple[Project, str, Path]:
    """Check the name and claim the dataset's folder; returns (project, slug, folder)."""
    project = get_project(session, project_id)
    if not is_valid_name(name):
        raise invalid("name", "letters, digits, space, '.', '_', '-', no '..'")
    slug = slugify(name)
    taken = select(Dataset.id).where(Dataset.project_id == project.id, Dataset.slug == slug)
    if session.scalar(taken) is not None:
        raise _conflict(name)
    folder = get_local_storage().path(f"projects/{project.slug}/datasets/{slug}")
    files.claim_folder(folder, f"dataset folder {slug!r}")
    return project, slug, folder


def _finish(
    session: Session, project: Project, slug: str, name: str, description: str | None, folder: Path
) -> Dataset:
    """Validate the files in `folder/source` and write the row; the folder goes if anything fails."""
    try:
        summary = summarize(load_dice(folder / "source"))
        dataset = Dataset(
            project=project,
            name=name,
            slug=slug,
            description=description,
            **summary,
            total_annotations=sum(t["total_annotations"] for t in summary["annotations"].values()),
        )
        try:
            with session.begin_nested():
                session.add(dataset)
        except IntegrityError as exc:
            raise _conflict(name) from exc
        # Workers on other hosts read the files from the storage backend (a no-op when it is this folder).
        publish_tree(get_local_storage(), dataset.source_key)
    except BaseException:
        _discard(folder)
        raise
    on_rollback(session, lambda: _discard(folder))
    return dataset


def register_from_zip(
    session: Session, project_id: int, name: str, description: str | None, upload: BinaryIO
) -> Dataset:
    """Extract an uploaded DICE ZIP safely (app.datasets.extract), validate it, register it."""
    storage = get_local_storage()
    zip_file = files.save_upload(upload, storage.root / UPLOAD_TMP, MAX_UPLOAD_BYTES)
    try:
        project, slug, folder = _prepare(session, project_id, name)
        try:
            extract_release(zip_file, folder / "source", EXTRACT_LIMITS, field="file")
            _flatten_single_root(folder / "source")
        except BaseException:
            _discard(folder)
            raise
        return _finish(session, project, slug, name, description, folder)
    finally:
        zip_file.unlink(missing_ok=True)


def _flatten_single_root(source: Path) -> None:
    # Zipping a folder usually puts everything under one top folder; the DICE root is that folder.
    entries = [p for p in source.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not (source / "images").exists():
        inner = entries[0]
        for child in inner.iterdir():
            child.rename(source / child.name)
        inner.rmdir()


def register_from_folder(
    session: Session, body: schemas.DatasetFromFolder, principal: Principal | None = None
) -> Dataset:
    """Copy a DICE folder already in storage into the dataset's own folder, validate it, register it."""
    source = files.storage_path(get_local_storage(), body.source_path, "source_path")
    gone = f"folder {body.source_path!r} does not exist in storage"
    if not path_visible(session, principal, source):
        raise missing("source_path", gone)  # before anything is said about it
    try:
        found = source.is_dir()
    except OSError:  # a name too long for the file system
        found = False
    if not found:
        raise invalid("source_path", gone)
    project, slug, folder = _prepare(session, body.project_id, body.name)
    try:
        files.copy_tree(source, folder / "source")
    except BaseException:
        _discard(folder)
        raise
    return _finish(session, project, slug, body.name, body.description, folder)


def get_dataset(
    session: Session, dataset_id: int, *, for_update: bool = False, principal: Principal | None = None
) -> Dataset:
    """The dataset; 404 also when `principal` does not cover its project (as if it did not exist)."""
    return get_visible(session, principal, Dataset, dataset_id, for_update=for_update)


def list_datasets(
    session: Session,
    project_id: int | None,
    task_type: TaskType | None,
    search: str | None,
    limit: int,
    offset: int,
    principal: Principal | None = None,
) -> tuple[list[Dataset], int]:
    stmt = select(Dataset)
    if principal is not None:
        stmt = stmt.where(principal.project_filter(Dataset.project_id))
    if project_id is not None:
        stmt = stmt.where(Dataset.project_id == project_id)
    if task_type is not None:
        # task_types is a JSON list; its text holds the quoted value (same on SQLite and PostgreSQL).
        stmt = stmt.where(cast(Dataset.task_types, String).like(f'%"{task_type.value}"%'))
    if search:
        stmt = stmt.where(Dataset.name.icontains(search, autoescape=True))
    return paginate(session, stmt, [Dataset.id.desc()], limit, offset)


def refresh_summary(dataset: Dataset, source: Path) -> None:
    summary = summarize(load_dice(source))
    dataset.task_types = summary["task_types"]
    dataset.total_images = summary["total_images"]
    dataset.splits = summary["splits"]
    dataset.annotations = dict(summary["annotations"])
    dataset.total_annotations = sum(t["total_annotations"] for t in summary["annotations"].values())


def source_dir(dataset: Dataset, storage: LocalStorage | None = None) -> Path:
    return (storage or get_local_storage()).path(dataset.source_key)


def to_read(dataset: Dataset) -> schemas.DatasetRead:
    return schemas.DatasetRead.model_validate(dataset)
