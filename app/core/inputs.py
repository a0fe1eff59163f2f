"""Types for what callers send, bounded where the code behind them has bounds: ids and offsets fit the
databases' signed 64-bit columns, a moment converts to UTC, and text is read as a number only when it
is plain ASCII digits.

Every request field, path or query parameter that holds an id uses `Id` (an offset `Offset`, a time
`Moment`), so a value out of range is a 422 naming the field instead of an overflow deep in SQLite or
PostgreSQL. `tests/auth/test_fuzz.py` checks that no integer the API accepts is unbounded.
"""

from datetime import UTC, datetime
from typing import Annotated

from annotated_types import Ge, Le
from pydantic import AfterValidator

MAX_INT = 2**63 - 1  # BIGINT in PostgreSQL, INTEGER in SQLite

Id = Annotated[int, Ge(1), Le(MAX_INT)]
Offset = Annotated[int, Ge(0), Le(MAX_INT)]


def _in_utc(moment: datetime) -> datetime:
    """A moment without an offset is UTC; one with an offset must still be a date in UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+05:00 is in year 0 in UTC
        raise ValueError("outside the dates Python can hold in UTC (years 1 to 9999)") from exc


Moment = Annotated[datetime, AfterValidator(_in_utc)]


def parse_decimal(text: str, max_digits: int = 18) -> int | None:
    """`text` as a non-negative int when it is 1..max_digits ASCII digits, else None.
    (`str.isdigit` also accepts '²' and Arabic-Indic digits, on which `int()` fails or surprises.)"""
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        return None
    return int(text)
