"""Projects: the container of datasets, versions, jobs and models; storage lives under `projects/<slug>/`.

Delete cascades (rows through the foreign keys, then the storage folder once the delete commits) but is
refused with 409 while any of the project's jobs is queued or running: a worker would otherwise write
into a folder that no longer has a row.
"""

import shutil

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.auth import Principal, forbidden
from app.core.db import on_commit
from app.core.errors import AppError, ErrorCode, FieldError, invalid
from app.core.jobs import ACTIVE, TERMINAL
from app.core.naming import is_valid_name, slugify
from app.core.pagination import paginate
from app.core.storage import get_local_storage, unpublish_tree
from app.core.visibility import get_visible
from app.models import Dataset, DatasetVersion, Project, Role, TrainingJob
from app.projects import schemas


def _check_name(name: str) -> None:
    if not is_valid_name(name):
        raise invalid(
            "name", "letters, digits, space, '.', '_', '-', starting with a letter or digit, no '..'"
        )


def _conflict(name: str) -> AppError:
    reason = f"a project named {name!r} (or with the same slug) exists"
    return AppError(409, ErrorCode.CONFLICT, f"name: {reason}", [FieldError("name", reason)])


def get_project(
    session: Session, project_id: int, *, for_update: bool = False, principal: Principal | None = None
) -> Project:
    """The project; 404 also when `principal` does not cover it (as if it did not exist)."""
    return get_visible(session, principal, Project, project_id, for_update=for_update)


def create_project(session: Session, body: schemas.ProjectCreate) -> Project:
    _check_name(body.name)
    project = Project(name=body.name, slug=slugify(body.name), description=body.description)
    try:
        with session.begin_nested():
            session.add(project)
    except IntegrityError as exc:
        raise _conflict(body.name) from exc
    return project


def list_projects(
    session: Session, search: str | None, limit: int, offset: int, principal: Principal | None = None
) -> tuple[list[Project], int]:
    stmt = select(Project)
    if principal is not None:
        stmt = stmt.where(principal.project_filter(Project.id))
    if search:
        stmt = stmt.where(Project.name.ilike(f"%{search}%"))
    return paginate(session, stmt, [Project.id], limit, offset)


def update_project(
    session: Session, project_id: int, body: schemas.ProjectUpdate, principal: Principal | None = None
) -> Project:
    """Rename or describe a project; its GPU quota and share weight are the fleet's, set by admin keys."""
    # Not a member key's, even for all projects: its own project's share would be its to raise.
    if (
        principal is not None
        and principal.role != Role.ADMIN
        and {"gpu_quota", "share_weight"} & body.model_fields_set
    ):
        raise forbidden("setting a project's GPU quota or share weight needs an admin key")
    project = get_project(session, project_id)
    if body.name is not None and body.name != project.name:
        _check_name(body.name)
        try:
            with session.begin_nested():
                project.name = body.name
        except IntegrityError as exc:
            raise _conflict(body.name) from exc
    if "description" in body.model_fields_set:
        project.description = body.description
    if "gpu_quota" in body.model_fields_set:
        project.gpu_quota = body.gpu_quota
    if body.share_weight is not None:
        project.share_weight = body.share_weight
    session.flush()
    return project


def delete_project(session: Session, project_id: int) -> None:
    project = get_project(session, project_id, for_update=True)
    active = session.scalar(
        select(func.count()).where(TrainingJob.project_id == project_id, TrainingJob.status.not_in(TERMINAL))
    )
    if active:
        raise AppError(
            409, ErrorCode.CONFLICT, f"project {project_id} has {active} unfinished training job(s)"
        )
    local, prefix = get_local_storage(), f"projects/{project.slug}"
    session.execute(delete(Project).where(Project.id == project_id))
    session.expunge(project)

    def remove_files() -> None:  # only once the rows are gone for good
        shutil.rmtree(local.path(prefix), ignore_errors=True)
        unpublish_tree(local, prefix)

    on_commit(session, remove_files)


def to_read(session: Session, project: Project) -> schemas.ProjectRead:
    def count(model: type[Dataset] | type[DatasetVersion] | type[TrainingJob]) -> int:
        return session.scalar(select(func.count()).where(model.project_id == project.id)) or 0

    return schemas.ProjectRead(
        id=project.id,
        name=project.name,
        slug=project.slug,
        description=project.description,
        storage_prefix=f"projects/{project.slug}",
        datasets=count(Dataset),
        versions=count(DatasetVersion),
        jobs=count(TrainingJob),
        gpu_quota=project.gpu_quota,
        share_weight=project.share_weight,
        running_jobs=session.scalar(
            select(func.count()).where(
                TrainingJob.project_id == project.id, TrainingJob.status.in_(list(ACTIVE))
            )
        )
        or 0,
        created_at=project.created_at,
        updated_at=project.updated_at,
    )
