"""Check a config dict against the schema, collecting one reason per bad key (never stopping at the first)."""

import difflib
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from app.configs.schema import BY_NAME, RESERVED, USER_MODE_KEYS, Kind, Param, params_for
from app.core.errors import FieldError

Mode = Literal["user", "developer"]

# 'cpu', 'mps', a CUDA index or several ('0', '0,1', 'cuda:0'): what Ultralytics' select_device accepts.
_DEVICE = re.compile(r"cpu|mps|(cuda:)?\d+(,\d+)*")
_TYPE_NAMES = {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "a list"}


def _got(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python, but `true` is never a sensible epoch count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _range_reason(p: Param, value: float) -> str | None:
    lo_ok = p.minimum is None or (value > p.minimum if p.exclusive_minimum else value >= p.minimum)
    hi_ok = p.maximum is None or (value < p.maximum if p.exclusive_maximum else value <= p.maximum)
    if lo_ok and hi_ok:
        return None
    if p.minimum is not None and p.maximum is not None:
        lo, hi = ("(" if p.exclusive_minimum else "["), (")" if p.exclusive_maximum else "]")
        return f"must be in {lo}{p.minimum:g}, {p.maximum:g}{hi}, got {value:g}"
    if p.minimum is not None:
        return f"must be {'>' if p.exclusive_minimum else '>='} {p.minimum:g}, got {value:g}"
    return f"must be {'<' if p.exclusive_maximum else '<='} {p.maximum:g}, got {value:g}"


def _choice_reason(p: Param, value: str) -> str | None:
    if value in p.choices:
        return None
    hint = next((c for c in p.choices if c.lower() == value.lower()), None)
    hint = hint or next(iter(difflib.get_close_matches(value, p.choices, n=1)), None)
    did_you_mean = f"; did you mean {hint!r}?" if hint else ""
    return f"must be one of {', '.join(repr(c) for c in p.choices)}, got {value!r}{did_you_mean}"


def _int_reason(p: Param, value: Any) -> str | None:
    if not _is_int(value):
        return f"must be an integer, not {_got(value)}"
    if p.multiple_of and value % p.multiple_of:
        nearest = max(p.multiple_of, round(value / p.multiple_of) * p.multiple_of)
        return f"must be a multiple of {p.multiple_of} (the model's stride), got {value}; try {nearest}"
    return _range_reason(p, value)


def _batch_reason(value: Any) -> str | None:
    if _is_int(value):
        return None if value == -1 or value >= 1 else f"must be >= 1, or -1 for AutoBatch, got {value}"
    if isinstance(value, float) and math.isfinite(value):
        return None if 0 < value < 1 else f"as a float it is a GPU memory fraction in (0, 1), got {value:g}"
    return f"must be an integer (or a float in (0, 1)), not {_got(value)}"


def _device_reason(value: Any) -> str | None:
    if _is_int(value):
        return None if value >= -1 else f"must be a CUDA index >= 0 (or -1 for automatic), got {value}"
    if isinstance(value, str):
        return (
            None
            if _DEVICE.fullmatch(value)
            else f"must be 'cpu', 'mps' or CUDA indices like '0,1', got {value!r}"
        )
    if isinstance(value, list) and value and all(_is_int(x) and x >= 0 for x in value):
        return None
    return f"must be a CUDA index, a device string or a non-empty list of CUDA indices, not {_got(value)}"


def _freeze_reason(value: Any) -> str | None:
    if _is_int(value):
        return None if value >= 0 else f"must be >= 0, got {value}"
    if isinstance(value, list) and all((_is_int(x) and x >= 0) or (isinstance(x, str) and x) for x in value):
        return None
    return f"must be a layer count or a list of layer indices / module names, not {_got(value)}"


def value_reason(p: Param, value: Any) -> str | None:
    """Why `value` is not acceptable for `p`, or None when it is."""
    if value is None:
        return None if p.nullable else "must not be null"
    match p.kind:
        case Kind.INT:
            return _int_reason(p, value)
        case Kind.FLOAT:
            return _range_reason(p, value) if _is_number(value) else f"must be a number, not {_got(value)}"
        case Kind.BOOL:
            return None if isinstance(value, bool) else f"must be true or false, not {_got(value)}"
        case Kind.STR:
            return (
                _choice_reason(p, value) if isinstance(value, str) else f"must be a string, not {_got(value)}"
            )
        case Kind.BOOL_OR_CHOICE:
            if isinstance(value, bool):
                return None
            if isinstance(value, str):
                return _choice_reason(p, value)
            return f"must be true, false or one of {', '.join(repr(c) for c in p.choices)}, not {_got(value)}"
        case Kind.BATCH:
            return _batch_reason(value)
        case Kind.DEVICE:
            return _device_reason(value)
        case Kind.FREEZE:
            return _freeze_reason(value)


def key_reason(key: str, value: Any, task: str, mode: Mode) -> str | None:
    """Why `key: value` cannot be part of a `task` config in `mode`, or None when it can."""
    if key in RESERVED:
        return RESERVED[key]
    p = BY_NAME.get(key)
    if p is None:
        names = [q.name for q in params_for(task)]
        hint = next(iter(difflib.get_close_matches(key, names, n=1)), None)
        return f"unknown parameter{f'; did you mean {hint!r}?' if hint else ''}"
    if task not in p.tasks:
        return f"does not apply to {task}; only to {', '.join(sorted(p.tasks))}"
    if mode == "user" and not p.user_mode:
        return f"not available in user mode (allowed: {', '.join(USER_MODE_KEYS)}); use developer mode"
    return value_reason(p, value)


def config_errors(config: Mapping[str, Any], task: str, mode: Mode, prefix: str) -> list[FieldError]:
    """One FieldError per bad key of `config`, named `<prefix>.<key>`."""
    errors = []
    for key, value in config.items():
        if (reason := key_reason(str(key), value, task, mode)) is not None:
            errors.append(FieldError(f"{prefix}.{key}", reason))
    return errors
