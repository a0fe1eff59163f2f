"""Request dependencies: one session per request, committed before the response is sent."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.core.db import Database


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_session(request: Request) -> Iterator[Session]:
    with get_db(request).session() as session:
        yield session


# scope="function": commit before the response goes out, so a client that got 201 can read the row
# and a failed commit still becomes a problem+json answer.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def request_db(request: Request) -> Database:
    """`get_db` as a dependency: async, as it only reads the app's state (a sync one costs a thread)."""
    return get_db(request)


DatabaseDep = Annotated[Database, Depends(request_db)]
