"""Pagination: one dependency for `?limit=&offset=` and one helper that counts and slices a SELECT.

Every list route takes `PageDep` (limit 1..500, 50 by default; offset from 0), and every service that
lists rows ends with `paginate`, so a page's `total` always counts the same filtered rows it slices.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.core.inputs import Offset

Row = TypeVar("Row")


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[Offset, Query()] = 0
) -> Page:
    return Page(limit, offset)


PageDep = Annotated[Page, Depends(page_params)]


def paginate(
    session: Session, stmt: Select[Row], order_by: Sequence[Any], limit: int, offset: int
) -> tuple[list[Row], int]:
    """The rows of `stmt` in this order from `offset` (at most `limit`), and how many there are in all."""
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(*order_by).limit(limit).offset(offset)).unique()
    return list(rows), total
