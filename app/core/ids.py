"""The integers a caller may send: ids, offsets and counts fit the databases' signed 64-bit columns, and
text is read as a number only when it is plain ASCII digits.

Every request field, path or query parameter that holds an id uses `Id` (an offset `Offset`), so a
value past 2**63 - 1 is a 422 naming the field instead of an overflow deep in SQLite or PostgreSQL.
`tests/auth/test_fuzz.py` checks that no integer the API accepts is unbounded.
"""

from typing import Annotated

from annotated_types import Ge, Le

MAX_INT = 2**63 - 1  # BIGINT in PostgreSQL, INTEGER in SQLite

Id = Annotated[int, Ge(1), Le(MAX_INT)]
Offset = Annotated[int, Ge(0), Le(MAX_INT)]


def parse_decimal(text: str, max_digits: int = 18) -> int | None:
    """`text` as a non-negative int when it is 1..max_digits ASCII digits, else None.
    (`str.isdigit` also accepts '²' and Arabic-Indic digits, on which `int()` fails or surprises.)"""
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        return None
    return int(text)
