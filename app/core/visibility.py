"""What a caller may see: the one place that decides it, for rows, storage keys and folders.

Whatever a key may not see answers exactly like something that does not exist: the same status, the same
words, and nothing said about it first (no size, no content check, no "belongs to project X"). So every
route that takes an id, a storage key or a path asks here before it looks at the thing itself.

- A row of a project (job, dataset, version, model) is looked up with `get_visible`, which puts the key's
  projects in the SELECT: a row the key may not see is never loaded, and its 404 is the one of a missing
  row. What is not a row (an inference job in Redis, an id in a path) is checked with `ensure_visible`.
- Storage under `projects/<slug>/` belongs to that project. The rest of storage (inference job inputs,
  folders an operator drops in) belongs to no project: only keys for every project see it.
- Folders outside storage are the import roots (TRAINYARD_IMPORT_ROOTS), which the operator shares with
  every key; app/training/dataset_check.py refuses any other folder, whoever asks.

`principal=None` is a trusted caller (a worker, the CLI on the server): it sees everything.
"""

from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.errors import AppError, ErrorCode, FieldError, not_found
from app.core.settings import get_settings
from app.core.storage import LocalStorage, get_storage
from app.models import Dataset, DatasetVersion, Project, RegisteredModel, TrainingJob

Row = TypeVar("Row", Project, Dataset, DatasetVersion, TrainingJob, RegisteredModel)

# Per kind of row: what a 404 calls it ("training job 7 does not exist") and the column naming its project.
KINDS: dict[type[Any], tuple[str, Any]] = {
    Project: ("project", Project.id),
    Dataset: ("dataset", Dataset.project_id),
    DatasetVersion: ("dataset version", DatasetVersion.project_id),
    TrainingJob: ("training job", TrainingJob.project_id),
    RegisteredModel: ("model", RegisteredModel.project_id),
}


def missing(field: str, reason: str) -> AppError:
    """404 naming the request field, for a value that does not exist or that the key may not see."""
    return AppError(404, ErrorCode.NOT_FOUND, f"{field}: {reason}", [FieldError(field, reason)])


def ensure_visible(principal: Principal | None, project_id: int, what: str, ident: object) -> None:
    """404 for a row of a project the key does not cover, worded as if the row did not exist."""
    if principal is not None and not principal.can_read(project_id):
        raise not_found(what, ident)


def find_visible(
    session: Session, principal: Principal | None, model: type[Row], ident: int, *, for_update: bool = False
) -> Row | None:
    """The row with this id, or None when it does not exist or lies in a project the key does not cover.
    The scope is part of the query, so both cases are one: no row. `for_update` locks the row (and
    reloads it) for a change that must not race another."""
    stmt = select(model).where(model.id == ident)
    if principal is not None:
        stmt = stmt.where(principal.project_filter(KINDS[model][1]))
    if for_update:
        stmt = stmt.with_for_update(of=model).execution_options(populate_existing=True)
    return session.execute(stmt).unique().scalar_one_or_none()


def get_visible(
    session: Session, principal: Principal | None, model: type[Row], ident: int, *, for_update: bool = False
) -> Row:
    """`find_visible`, or 404 worded the same whether the row does not exist or the key may not see it."""
    row = find_visible(session, principal, model, ident, for_update=for_update)
    if row is None:
        raise not_found(KINDS[model][0], ident)
    return row


def ensure_project_visible(principal: Principal | None, project_id: int) -> None:
    ensure_visible(principal, project_id, "project", project_id)


def ensure_project_usable(session: Session, principal: Principal, name: str) -> None:
    """A job names its project: an existing one the key covers, or a new one if the key may create it.
    A scoped key cannot tell a project it does not cover from one that does not exist (404 both)."""
    project_id = session.scalar(select(Project.id).where(Project.name == name))
    if project_id is not None:
        ensure_visible(principal, project_id, "project", name)
    elif not principal.all_projects:
        raise not_found("project", name)


def _in_visible_project(session: Session, principal: Principal | None, key: str) -> bool:
    """Whether the storage key lies under `projects/<slug>/` of a project the key covers."""
    if principal is None or principal.all_projects:
        return True
    top, _, rest = key.partition("/")
    slug = rest.split("/", 1)[0]
    if top != "projects" or not slug:
        return False
    project_id = session.scalar(select(Project.id).where(Project.slug == slug))
    return project_id is not None and principal.can_read(project_id)


def key_visible(session: Session, principal: Principal | None, key: str) -> bool:
    """May the caller read the object at this (well-formed, app.core.storage.check_key) storage key?
    It may not when it could not see the key's project, whether or not the object exists."""
    storage = get_storage()
    if isinstance(storage, LocalStorage):
        # A link in the storage folder is read through: what counts is where it leads.
        target = storage.path(key).resolve()
        if not target.is_relative_to(storage.root):
            return False
        key = target.relative_to(storage.root).as_posix()
    return _in_visible_project(session, principal, key)


def path_visible(session: Session, principal: Principal | None, path: Path) -> bool:
    """May the caller read this folder (absolute, links resolved)? Inside storage, as its key; outside,
    it is in an import root (the only other place a folder may come from)."""
    root = get_settings().resolved_storage_root
    if not path.is_relative_to(root):
        return True
    return _in_visible_project(session, principal, path.relative_to(root).as_posix())
