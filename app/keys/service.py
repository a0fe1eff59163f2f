"""API keys: `ty_<prefix>_<secret>`. The prefix finds the row, the sha256 of the whole key proves it; the
key itself is shown once, when it is made, and never stored.

A key has a role (admin | member | viewer) and a scope: every project (admins always; other roles with
`all_projects`), or a list of projects. Creating or deleting projects needs an all-projects writer.
"""

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.db import on_commit
from app.core.errors import AppError, ErrorCode, invalid, not_found
from app.core.inputs import parse_decimal
from app.core.naming import is_valid_name, slugify
from app.models import ApiKey, ApiKeyProject, Project, Role
from app.models.base import utcnow

KEY_PATTERN = re.compile(r"ty_([0-9a-f]{8})_([A-Za-z0-9_\-]{32,64})")  # fullmatch: no trailing newline
# last_used_at is written at most this often per key: a read-mostly API should not write on every call.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def key_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """(key, prefix) for a new key."""
    prefix = secrets.token_hex(4)
    return f"ty_{prefix}_{secrets.token_urlsafe(32)}", prefix


def _resolve_project(session: Session, ident: str, create: bool) -> tuple[Project, bool]:
    """A project by name (or id); created when missing and `create`. Returns (project, created)."""
    project = session.scalar(select(Project).where(Project.name == ident))
    project_id = parse_decimal(ident)
    if project is None and project_id is not None:
        project = session.get(Project, project_id)
    if project is not None:
        return project, False
    if not create:
        raise not_found("project", ident)
    if not is_valid_name(ident):
        raise invalid("project", "letters, digits, space, '.', '_', '-', starting with a letter or digit")
    project = Project(name=ident, slug=slugify(ident))
    session.add(project)
    session.flush()
    return project, True


def create_key(
    session: Session,
    role: Role,
    projects: list[str],
    name: str | None = None,
    all_projects: bool = False,
    create_projects: bool = True,
) -> tuple[ApiKey, str, list[str]]:
    """Make a key; returns (row, the key itself, names of projects created for it)."""
    if role == Role.ADMIN:
        if projects:
            raise invalid("project", "an admin key covers every project; give no --project")
        all_projects = True
    elif bool(projects) == all_projects:
        raise invalid("project", "a member or viewer key needs --project (repeatable) or --all-projects")
    token, prefix = new_token()
    key = ApiKey(
        prefix=prefix,
        key_hash=key_hash(token),
        name=name or f"{role.value} key",
        role=role.value,
        all_projects=all_projects,
    )
    created: list[str] = []
    for ident in dict.fromkeys(projects):
        project, was_created = _resolve_project(session, ident, create_projects)
        if was_created:
            created.append(project.name)
        key.scopes.append(ApiKeyProject(project_id=project.id))
    session.add(key)
    session.flush()
    return key, token, created


def find_key(session: Session, ident: str) -> ApiKey:
    """A key by id, prefix, or the key itself."""
    match = KEY_PATTERN.fullmatch(ident)
    prefix = match.group(1) if match else ident
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    key_id = parse_decimal(ident)
    if key is None and key_id is not None:
        key = session.get(ApiKey, key_id)
    if key is None:
        raise not_found("API key", ident)
    return key


_revocations = [0]  # how many revocations this process made: a cached key lookup older than one is void


def revocations() -> int:
    return _revocations[0]


def _count_revocation() -> None:
    _revocations[0] += 1


def revoke_key(session: Session, ident: str) -> ApiKey:
    key = find_key(session, ident)
    if key.revoked_at is not None:
        raise AppError(409, ErrorCode.CONFLICT, f"API key {key.prefix} was revoked at {key.revoked_at}")
    key.revoked_at = utcnow()
    session.flush()
    # Now (a lookup cached meanwhile could still see the key active) and again once it is committed.
    _count_revocation()
    on_commit(session, _count_revocation)
    return key


def list_keys(session: Session, include_revoked: bool = False) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(stmt))


def has_keys(session: Session) -> bool:
    """Whether any key was ever made (revoked ones count: revoking every key must not mint a new one)."""
    return bool(session.scalar(select(func.count()).select_from(ApiKey)))


def authenticate(session: Session, token: str) -> ApiKey | None:
    """The active key `token` is, or None (malformed, unknown, wrong secret or revoked)."""
    match = KEY_PATTERN.fullmatch(token)
    if match is None:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, key_hash(token)):
        return None
    touch(key)
    return key


def active_key(session: Session, key_id: int) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    return key if key is not None and key.revoked_at is None else None


def touch(key: ApiKey) -> None:
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now


def project_names(session: Session, key: ApiKey) -> list[str]:
    if key.all_projects:
        return []
    ids = [s.project_id for s in key.scopes]
    return list(session.scalars(select(Project.name).where(Project.id.in_(ids)).order_by(Project.name)))
