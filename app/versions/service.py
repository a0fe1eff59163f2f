"""Freeze, list, read, compare and archive dataset versions.

Creating a version is three short transactions around the slow part, so no database lock is held while
images are hashed (on SQLite a write transaction locks the whole file):

1. read and filter the dataset, hash the images, check what preprocessing needs (app.versions.plan;
   nothing written; 400 when no image is left, 422 for settings the images cannot take);
2. lock the project row (SELECT ... FOR UPDATE), re-check the idempotency key, take the next number
   from `projects.version_seq`, insert the row as `creating`, commit;
3. generate the images the preprocessing and augmentation describe (app.versions.derive), write
   `manifest.json` (+ `manifest.json.sha256`) to storage, then mark the row `ready`, or `failed` with
   the reason (and neither manifest nor generated files left).

The unique constraints (project, number) and (project, idempotency_key) back the lock up. This service
therefore opens its own sessions on the Database instead of using the request's.
"""

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.db import Database
from app.core.errors import AppError, ErrorCode, invalid, not_found
from app.core.pagination import paginate
from app.core.storage import LocalStorage, get_local_storage, get_storage, publish
from app.core.visibility import get_visible
from app.datasets.dice import load_dice
from app.models import Dataset, DatasetVersion, TrainingJob, VersionStatus
from app.models.base import utcnow
from app.projects.service import get_project
from app.versions import derive, manifest, schemas
from app.versions.online import side_by_side
from app.versions.plan import plan
from app.versions.render import UnreadableImage

log = logging.getLogger("app.backend")


def _by_key(session: Session, project_id: int, key: str | None) -> DatasetVersion | None:
    if key is None:
        return None
    stmt = select(DatasetVersion).where(
        DatasetVersion.project_id == project_id, DatasetVersion.idempotency_key == key
    )
    return session.execute(stmt).unique().scalar_one_or_none()


def _pick_dataset(session: Session, project_id: int, dataset_id: int | None) -> Dataset:
    stmt = select(Dataset).where(Dataset.project_id == project_id)
    if dataset_id is not None:
        found = session.execute(stmt.where(Dataset.id == dataset_id)).unique().scalar_one_or_none()
        if found is None:
            raise invalid("dataset_id", f"dataset {dataset_id} is not in project {project_id}")
        return found
    datasets = list(session.scalars(stmt.limit(2)).unique())
    if len(datasets) != 1:
        what = "no dataset" if not datasets else "several datasets; choose one with dataset_id"
        raise invalid("dataset_id", f"project {project_id} has {what}")
    return datasets[0]


@dataclass
class Located:
    dataset_id: int
    slug: str
    prefix: str
    source: Path


def locate(db: Database, project_id: int, dataset_id: int | None) -> Located:
    """The dataset a version request is about (404 for an unknown project, 422 for a wrong dataset)."""
    with db.session() as session:
        get_project(session, project_id)
        dataset = _pick_dataset(session, project_id, dataset_id)
        return Located(
            dataset.id, dataset.slug, dataset.storage_prefix, get_local_storage().path(dataset.source_key)
        )


def smallest_image(db: Database, project_id: int, dataset_id: int | None) -> tuple[int, int, str] | None:
    """The smallest image (width, height, path) the dataset declares, or None when the request names no
    usable dataset (it is refused for that later, with its own error)."""
    try:
        dice = load_dice(locate(db, project_id, dataset_id).source, check_files=False)
    except (AppError, ValueError, OSError):
        return None
    images = [image for annotations in dice.tasks.values() for image in annotations.images]
    if not images:
        return None
    image = min(images, key=lambda i: (i.width * i.height, i.path))
    return image.width, image.height, image.path


async def note_smallest_image(db: Database, principal: Principal, project_id: int, raw: Any) -> None:
    """For a version request (still unvalidated) with tiles and a resize on a project the key sees: the
    dataset's smallest image, so that tiles too small for the input come in the same 422 as every other
    field's (schemas.SMALLEST_IMAGE). Whatever else is wrong with the request is left to the route."""
    if not principal.can_read(project_id):
        return
    pre = raw.get("preprocessing") if isinstance(raw, dict) else None
    if not isinstance(pre, dict) or not all(isinstance(pre.get(k), str) for k in ("tile", "resize")):
        return
    dataset_id = raw.get("dataset_id")
    if dataset_id is not None and not (type(dataset_id) is int and 0 < dataset_id < 2**63):
        return
    smallest = await anyio.to_thread.run_sync(smallest_image, db, project_id, dataset_id)
    schemas.SMALLEST_IMAGE.set(smallest)


def create_version(db: Database, project_id: int, body: schemas.VersionCreate) -> tuple[DatasetVersion, bool]:
    """Freeze a version; returns (version, created). An idempotency key already used returns its version."""
    local = get_local_storage()
    with db.session() as session:
        get_project(session, project_id)
        existing = _by_key(session, project_id, body.idempotency_key)
        if existing is not None:
            return existing, False
    where = locate(db, project_id, body.dataset_id)
    planned = plan(where.source, body)  # every refusal happens here, before anything is written

    version, created = _allocate(db, project_id, where.dataset_id, body, planned.ratios)
    if not created:
        return version, False

    key = f"{where.prefix}/versions/v{version.number}/{manifest.MANIFEST_FILE}"
    header = {
        "project": {"id": project_id, "slug": version.project.slug},
        "dataset": {"id": where.dataset_id, "slug": where.slug, "source": f"{where.prefix}/source"},
        "request": body.model_dump(mode="json", exclude={"idempotency_key", "display_name", "dataset_id"}),
    }
    made: derive.Generated | None = None
    try:
        selection, hashes, placed, lineage = planned.selection, planned.hashes, planned.placed, None
        if planned.renderer is not None:
            made = derive.Generated([])
            derive.generate(planned.items, planned.renderer, local.path(where.prefix), made)
            selection, hashes, placed, lineage = derive.rebuild(selection, made.outputs, derive.key_of)
        frozen = manifest.freeze(selection, header=header, hashes=hashes, placed=placed, lineage=lineage)
        local.put_bytes(key, frozen.manifest)
        local.put_bytes(f"{key}.sha256", f"{frozen.sha256}  {manifest.MANIFEST_FILE}\n".encode())
        # The manifest last: a worker elsewhere finds every image it names (app.core.storage.publish).
        publish(local, [_key_of(local, path) for path in (made.created if made else [])])
        publish(local, [f"{key}.sha256", key])
    except Exception as exc:
        log.exception("freezing version %s of project %s failed", version.number, project_id)
        leftovers = [local.path(k) for k in (key, f"{key}.sha256")] + (made.created if made else [])
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        with contextlib.suppress(Exception):  # the backend follows; the first error is the one to tell
            publish(local, [_key_of(local, path) for path in leftovers])
        _mark_failed(db, version.id, f"{type(exc).__name__}: {exc}")
        if isinstance(exc, UnreadableImage):
            raise invalid(f"images.{exc.path}", "is not a readable image") from exc
        raise AppError(500, ErrorCode.INTERNAL_ERROR, f"version v{version.number} failed: {exc}") from exc

    with db.session() as session:
        row = session.get(DatasetVersion, version.id)
        assert row is not None
        row.status = VersionStatus.READY
        row.task_types = sorted(frozen.class_counts)
        row.image_count = frozen.image_count
        row.annotation_count = frozen.annotation_count
        row.split_counts = frozen.split_counts
        row.class_counts = frozen.class_counts
        row.leakage = frozen.leakage
        row.manifest_key = key
        row.manifest_sha256 = frozen.sha256
    return row, True


def _key_of(local: LocalStorage, path: Path) -> str:
    return path.relative_to(local.root).as_posix()


def _allocate(
    db: Database,
    project_id: int,
    dataset_id: int,
    body: schemas.VersionCreate,
    ratios: dict[str, float] | None,
) -> tuple[DatasetVersion, bool]:
    """The next number under the project's row lock, or the version that already has this key."""
    try:
        with db.session() as session:
            project = get_project(session, project_id, for_update=True)
            existing = _by_key(session, project_id, body.idempotency_key)
            if existing is not None:
                return existing, False
            project.version_seq += 1
            version = DatasetVersion(
                project=project,
                dataset_id=dataset_id,
                number=project.version_seq,
                display_name=body.display_name,
                status=VersionStatus.CREATING,
                idempotency_key=body.idempotency_key,
                split_ratios=ratios,
                split_seed=body.split_seed,
                preprocessing=body.preprocessing.model_dump(),
                augmentation=body.augmentation.model_dump(),
                filters=body.filters.model_dump(),
                snapshot_at=utcnow(),
            )
            session.add(version)
            session.flush()
            session.refresh(version)  # loads the dataset relationship for storage_prefix
        return version, True
    except IntegrityError:
        # Only reachable if the lock was bypassed; the constraint still keeps one row per key.
        with db.session() as session:
            existing = _by_key(session, project_id, body.idempotency_key)
        if existing is None:
            raise
        return existing, False


def _mark_failed(db: Database, version_id: int, reason: str) -> None:
    with db.session() as session:
        row = session.get(DatasetVersion, version_id)
        if row is not None:
            row.status = VersionStatus.FAILED
            row.failure_reason = reason[:2000]


def get_version(
    session: Session, project_id: int, version_id: int, *, for_update: bool = False
) -> DatasetVersion:
    """The version, when it is one of the project's (the caller checked that the key sees the project)."""
    version = get_visible(session, None, DatasetVersion, version_id, for_update=for_update)
    if version.project_id != project_id:
        raise not_found("dataset version", version_id)
    return version


def list_versions(
    session: Session, project_id: int, include_archived: bool, limit: int, offset: int
) -> tuple[list[DatasetVersion], int]:
    get_project(session, project_id)
    stmt = select(DatasetVersion).where(DatasetVersion.project_id == project_id)
    if not include_archived:
        stmt = stmt.where(DatasetVersion.status != VersionStatus.ARCHIVED)
    return paginate(session, stmt, [DatasetVersion.number.desc()], limit, offset)


def archive_version(session: Session, project_id: int, version_id: int) -> DatasetVersion:
    """Soft delete: the row and manifest stay (jobs point at them); new jobs cannot use it."""
    version = get_version(session, project_id, version_id, for_update=True)
    if version.status in (VersionStatus.TRAINING, VersionStatus.CREATING):
        raise AppError(409, ErrorCode.CONFLICT, f"version v{version.number} is {version.status}")
    if version.status != VersionStatus.ARCHIVED:
        version.status = VersionStatus.ARCHIVED
        version.archived_at = utcnow()
    return version


def read_manifest(version: DatasetVersion) -> dict[str, Any]:
    if version.manifest_key is None:
        raise AppError(
            409, ErrorCode.CONFLICT, f"version v{version.number} has no manifest ({version.status})"
        )
    data: dict[str, Any] = json.loads(get_storage().get_bytes(version.manifest_key))
    return data


def compare(session: Session, project_id: int, version_id: int, other_id: int) -> schemas.VersionComparison:
    base = get_version(session, project_id, version_id)
    other = get_version(session, project_id, other_id)
    diff = manifest.compare(read_manifest(base), read_manifest(other))
    return schemas.VersionComparison(base=base.id, other=other.id, **diff)


def to_read(version: DatasetVersion) -> schemas.VersionRead:
    return schemas.VersionRead.model_validate(version)


def to_detail(session: Session, version: DatasetVersion) -> schemas.VersionDetail:
    stmt = (
        select(TrainingJob)
        .where(TrainingJob.dataset_version_id == version.id)
        .order_by(TrainingJob.id.desc())
    )
    jobs = list(session.scalars(stmt).unique())
    return schemas.VersionDetail(
        **to_read(version).model_dump(),
        jobs=[
            schemas.JobSummary(
                id=j.id,
                name=j.name,
                status=j.status,
                dataset_manifest_sha256=j.dataset_manifest_sha256,
                created_at=j.created_at,
                augmentation=side_by_side(version.augmentation, j.config or {}),
            )
            for j in jobs
        ],
        models=[
            schemas.ModelSummary(job_id=j.id, weights=j.best_checkpoint)
            for j in jobs
            if j.status == "completed" and j.best_checkpoint
        ],
    )
