"""JSON from callers (a DICE file in an uploaded ZIP, an annotation batch): parsed with limits, so what
comes out is safe to index, store and send again, and a bad document is one readable reason.

`json.loads` alone lets through what breaks later: `1e400` becomes infinity (not JSON when sent back),
a 5,000-digit integer raises a bare ValueError, a document nested 200,000 deep a RecursionError, and
one nested 900 deep parses but fails the next `json.dumps`.
"""

import json
import math
from typing import Any

from app.core.inputs import MAX_INT

MAX_DEPTH = 64  # a DICE file nests about 6 deep


class BadJson(ValueError):
    """Why a document was refused, worded for the caller."""


def loads(data: str | bytes) -> Any:
    """The parsed document, or BadJson."""
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BadJson(f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise BadJson("not UTF-8 text") from exc
    except RecursionError as exc:
        raise BadJson(f"nested deeper than {MAX_DEPTH} levels") from exc
    except BadJson:
        raise
    except ValueError as exc:  # an integer past Python's digit limit for int()
        raise BadJson(OUT_OF_RANGE) from exc
    _check(value)
    return value


OUT_OF_RANGE = f"a number that is not finite or is larger than {MAX_INT} (the 64-bit integer range)"


def _no_constant(name: str) -> Any:
    raise BadJson(f"not valid JSON: {name} is not a number JSON allows")


def _check(document: Any) -> None:
    # Iterative: walking a deep document must not recurse either. One pass checks depth and numbers.
    stack = [([document], 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadJson(f"nested deeper than {MAX_DEPTH} levels")
        for item in value.values() if type(value) is dict else value:
            kind = type(item)
            if kind is dict or kind is list:
                stack.append((item, depth + 1))
            elif (kind is float or kind is int) and not (math.isfinite(item) and abs(item) <= MAX_INT):
                raise BadJson(OUT_OF_RANGE)
