"""Who is calling, and what they may see: one dependency for the whole app, plus project scoping helpers.

Every route needs `Authorization: Bearer ty_<prefix>_<secret>` unless its endpoint is marked:
- `@public`: no API key (health; the trainer callbacks, which check their own per-job token);
- `@read_only`: a POST that writes nothing (config resolution, stream tokens), open to viewers;
- `@stream_token_ok`: also takes `?token=` from `POST .../stream-token` (browser EventSource).

Missing, malformed, unknown or revoked keys are 401; a viewer's write is 403. What the key may see (rows,
storage keys, folders) is decided in app/core/visibility.py; lists filter with `Principal.project_filter`.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import Session

from app.core.db import Database
from app.core.deps import DatabaseDep
from app.core.errors import AppError, ErrorCode
from app.core.inputs import parse_decimal
from app.core.security import stream_token_key
from app.keys import service as keys
from app.models import ApiKey, Role

F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
bearer = HTTPBearer(auto_error=False, description="an API key: `trainyard keys create`")


def public(endpoint: F) -> F:
    """No API key for this endpoint."""
    endpoint.__trainyard_public__ = True  # type: ignore[attr-defined]
    return endpoint


def read_only(endpoint: F) -> F:
    """A POST that changes nothing: viewers may call it."""
    endpoint.__trainyard_read_only__ = True  # type: ignore[attr-defined]
    return endpoint


def stream_token_ok(endpoint: F) -> F:
    """Accepts `?token=<stream token>` instead of the Authorization header."""
    endpoint.__trainyard_stream_token__ = True  # type: ignore[attr-defined]
    return endpoint


def _marked(request: Request, mark: str) -> bool:
    return bool(getattr(request.scope.get("endpoint"), f"__trainyard_{mark}__", False))


def unauthorized(detail: str) -> AppError:
    return AppError(401, ErrorCode.UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> AppError:
    return AppError(403, ErrorCode.FORBIDDEN, detail)


@dataclass(frozen=True)
class Principal:
    """An authenticated API key. `project_ids` None means every project."""

    key_id: int
    name: str
    role: Role
    project_ids: frozenset[int] | None

    @classmethod
    def of(cls, key: ApiKey) -> "Principal":
        return cls(key.id, key.name, Role(key.role), key.project_ids)

    @property
    def all_projects(self) -> bool:
        return self.project_ids is None

    def can_read(self, project_id: int) -> bool:
        return self.project_ids is None or project_id in self.project_ids

    def require_write(self) -> None:
        if self.role == Role.VIEWER:
            raise forbidden("this API key is read-only (viewer)")

    def require_all_projects(self, action: str) -> None:
        """Creating or deleting projects, fleet metrics: an admin or an all-projects key. (Whether it may
        write is checked by the method, in `authenticate`.)"""
        if not self.all_projects:
            raise forbidden(f"{action} needs an admin key or a key for all projects")

    def project_filter(self, column: Any) -> ColumnElement[bool]:
        """A WHERE clause keeping the rows of visible projects."""
        return true() if self.project_ids is None else column.in_(self.project_ids)


def _from_header(db_session: Session, credentials: HTTPAuthorizationCredentials | None) -> ApiKey:
    if credentials is None:
        raise unauthorized("an API key is required: Authorization: Bearer <key>")
    key = keys.authenticate(db_session, credentials.credentials.strip())
    if key is None:
        raise unauthorized("the API key is malformed, unknown or revoked")
    return key


def _from_stream_token(db_session: Session, request: Request, token: str) -> ApiKey:
    job_id = parse_decimal(str(request.path_params.get("job_id", "")))
    key_id = stream_token_key(job_id, token, time.time()) if job_id is not None else None
    key = keys.active_key(db_session, key_id) if key_id is not None else None
    if key is None:
        raise unauthorized("the stream token is invalid, expired or for another job")
    return key


class RecentKeys:
    """Keys this process found valid in the last `seconds`, by the sha256 of the whole key, so a busy client
    costs no database session per request. A revocation made by this process voids every entry at once;
    one made elsewhere (`trainyard keys revoke`, another API process) is seen within `seconds`. Unknown,
    malformed and revoked keys are never kept: each of their requests asks the database."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._found: dict[str, tuple[float, int, Principal]] = {}  # digest -> (until, revocations, who)
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            entry = self._found.get(digest)
        if entry is None:
            return None
        until, seen_revocations, principal = entry
        if time.monotonic() >= until or seen_revocations != keys.revocations():
            return None
        return principal

    def put(self, digest: str, principal: Principal, seen_revocations: int) -> None:
        with self._lock:
            if len(self._found) > 10_000:  # many keys in a few seconds: start over rather than grow
                self._found.clear()
            self._found[digest] = (time.monotonic() + self.seconds, seen_revocations, principal)


recent_keys = RecentKeys(seconds=2.0)


def _digest(credentials: HTTPAuthorizationCredentials | None) -> str:
    return keys.key_hash(credentials.credentials.strip()) if credentials is not None else ""


def principal_from_header(db: Database, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The Principal of an `Authorization: Bearer` key, or 401. (The body limit calls it before the
    body is read, for an upload that may be larger than unauthenticated requests may send.)"""
    digest = _digest(credentials)
    principal = recent_keys.get(digest)
    if principal is not None:
        return principal
    seen_revocations = keys.revocations()  # before the lookup: a revocation during it voids the entry
    # A short session of its own: the request's session may not be used (or may hold SQLite's write lock).
    with db.session() as session:
        principal = Principal.of(_from_header(session, credentials))
    recent_keys.put(digest, principal, seen_revocations)
    return principal


def principal_from_stream_token(db: Database, request: Request, token: str) -> Principal:
    with db.session() as session:
        return Principal.of(_from_stream_token(session, request, token))


async def authenticate(
    request: Request,
    db: DatabaseDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> "Principal | None":
    """The app-wide dependency: the caller's Principal (None on public endpoints). Async, so a key found in
    `recent_keys` costs no thread; the database is asked from a worker thread."""
    if _marked(request, "public"):
        return None
    token = request.query_params.get("token")
    principal: Principal | None = getattr(request.state, "principal", None)  # the body limit's check
    if principal is None and credentials is None and token and _marked(request, "stream_token"):
        principal = await run_in_threadpool(principal_from_stream_token, db, request, token)
    elif principal is None:
        principal = recent_keys.get(_digest(credentials))
        if principal is None:
            principal = await run_in_threadpool(principal_from_header, db, credentials)
    if request.method not in SAFE_METHODS and not _marked(request, "read_only"):
        principal.require_write()
    request.state.principal = principal
    return principal


async def current_principal(principal: Annotated["Principal | None", Depends(authenticate)]) -> "Principal":
    if principal is None:  # a public endpoint asked for a principal: a programming error
        raise unauthorized("an API key is required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
