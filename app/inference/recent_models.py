"""Which model a synchronous inference request names, remembered for a moment, so a busy client costs no
database session per request (on SQLite each one takes the file's write lock, on PostgreSQL a pool ping).

What is kept is the worker's `model_ref` of a model that resolved for this caller (key, `model_id`,
`project_id`, `task`): refusals are never kept. A commit of this process that touches a model, a
deployment or a project (deploy, rollback, revert, export, a deletion) voids every entry at once, so a
redeploy is served by the next request; a change made by another process (a worker registering or
validating a model, another API process, the CLI) is seen within `SECONDS`.
"""

import threading
import time
from itertools import chain
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from app.core.auth import Principal
from app.core.db import on_commit
from app.inference.protocol import model_ref
from app.inference.service import resolve_model
from app.models import Deployment, Project, RegisteredModel

SECONDS = 2.0
REGISTRY = (RegisteredModel, Deployment, Project)

Wanted = tuple[Principal, int | None, int | None, str | None]


class RecentModels:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.changes = 0  # commits of this process that touched the registry
        self._found: dict[Wanted, tuple[float, int, dict[str, Any]]] = {}  # -> (until, changes, ref)
        self._lock = threading.Lock()

    def get(
        self, principal: Principal, model_id: int | None, project_id: int | None, task: str | None
    ) -> dict[str, Any] | None:
        with self._lock:
            entry = self._found.get((principal, model_id, project_id, task))
        if entry is None:
            return None
        until, seen_changes, ref = entry
        if time.monotonic() >= until or seen_changes != self.changes:
            return None
        return dict(ref)

    def resolve(
        self,
        session: Session,
        principal: Principal,
        model_id: int | None,
        project_id: int | None,
        task: str | None,
    ) -> dict[str, Any]:
        """`resolve_model` from the database (refusals raised as they are), remembered when it resolves."""
        seen_changes = self.changes  # before the lookup: a change committed during it voids the entry
        ref = model_ref(resolve_model(session, principal, model_id, project_id, task))
        with self._lock:
            if len(self._found) > 10_000:  # many callers and models in a few seconds: start over
                self._found.clear()
            self._found[(principal, model_id, project_id, task)] = (
                time.monotonic() + self.seconds,
                seen_changes,
                ref,
            )
        return dict(ref)

    def forget_all(self) -> None:
        with self._lock:
            self.changes += 1
            self._found.clear()


recent_models = RecentModels(SECONDS)


def _registry_changed(session: Session) -> None:
    if not session.info.get("registry_changed"):
        session.info["registry_changed"] = True
        on_commit(session, recent_models.forget_all)


@event.listens_for(Session, "after_flush")
def _note_flushed_change(session: Session, _flush: UOWTransaction) -> None:
    # After a flush the session still lists what it flushed as new, dirty and deleted.
    if any(isinstance(row, REGISTRY) for row in chain(session.new, session.dirty, session.deleted)):
        _registry_changed(session)


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_change(state: ORMExecuteState) -> None:
    # UPDATE and DELETE statements (a project's deletion) bypass the flush.
    mapper = state.bind_mapper
    if (state.is_update or state.is_delete) and mapper is not None and issubclass(mapper.class_, REGISTRY):
        _registry_changed(state.session)


@event.listens_for(Session, "after_transaction_end")
def _drop_note(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop("registry_changed", None)
