"""A version used by training jobs: `training` while any job on it is unfinished, `ready` again after."""

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.errors import AppError, ErrorCode, invalid
from app.core.jobs import TERMINAL
from app.core.storage import get_local_storage
from app.core.visibility import get_visible
from app.datasets.convert import cache_dir
from app.datasets.types import TaskType
from app.models import DatasetVersion, Project, TrainingJob, VersionStatus

FIELD = "dataset_version_id"


def lock_version(session: Session, version_id: int) -> DatasetVersion | None:
    stmt = (
        select(DatasetVersion)
        .where(DatasetVersion.id == version_id)
        .with_for_update(of=DatasetVersion)
        .execution_options(populate_existing=True)
    )
    return session.execute(stmt).unique().scalar_one_or_none()


def yolo_dir(version: DatasetVersion, task: TaskType, root: Path | None = None) -> Path:
    """Where the worker materializes the version's YOLO layout for `task` (cached by manifest checksum)."""
    assert version.manifest_sha256 is not None
    base = root or get_local_storage().root
    return cache_dir(base / version.storage_prefix / "yolo", task, version.manifest_sha256)


def check_usable(version: DatasetVersion, project_id: int | None, task_type: str) -> DatasetVersion:
    """409/422 unless a job of `project_id` (None: a project not made yet) may train from the version.
    The caller looked the version up with `get_visible`: one the key may not see was a 404 already."""
    if version.project_id != project_id:
        raise invalid(FIELD, f"version {version.id} belongs to project {version.project.name!r}")
    if version.status not in (VersionStatus.READY, VersionStatus.TRAINING):
        raise AppError(409, ErrorCode.CONFLICT, f"{FIELD}: version v{version.number} is {version.status}")
    splits = version.split_counts.get(task_type)
    if splits is None:
        raise invalid(FIELD, f"version v{version.number} has no {task_type} annotations")
    if not splits.get("train") or not splits.get("val"):
        raise invalid(FIELD, f"version v{version.number} needs {task_type} images in train and val: {splits}")
    return version


def claim_for_job(
    session: Session, version_id: int, project: Project, task_type: str, principal: Principal | None = None
) -> DatasetVersion:
    """Check a job may train from the version (`check_usable`) and mark it `training`."""
    locked = get_visible(session, principal, DatasetVersion, version_id, for_update=True)
    version = check_usable(locked, project.id, task_type)
    version.status = VersionStatus.TRAINING
    return version


def release_for_job(session: Session, job: TrainingJob) -> None:
    """The job reached a terminal state: the version is `ready` again unless another job still uses it."""
    if job.dataset_version_id is None:
        return
    version = lock_version(session, job.dataset_version_id)
    if version is None or version.status != VersionStatus.TRAINING:
        return
    others = session.scalar(
        select(func.count()).where(
            TrainingJob.dataset_version_id == version.id,
            TrainingJob.id != job.id,
            TrainingJob.status.not_in(TERMINAL),
        )
    )
    if not others:
        version.status = VersionStatus.READY
