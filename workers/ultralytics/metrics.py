"""Ultralytics metric names -> the names users see (`metrics/mAP50(B)` -> `mAP50`)."""

from typing import Any

_SUFFIX = {"(B)": "", "(M)": "_mask", "(P)": "_pose"}


def _rename(key: str) -> str:
    name = key.removeprefix("metrics/")
    for suffix, replacement in _SUFFIX.items():
        if name.endswith(suffix):
            return name.removesuffix(suffix) + replacement
    return name


def split_metrics(
    metrics: dict[str, Any], train_losses: dict[str, Any]
) -> tuple[dict[str, float], dict[str, float]]:
    """(train, val) dicts of plain floats from a trainer's validation metrics and its loss items."""
    train = {key.removeprefix("train/"): float(value) for key, value in train_losses.items()}
    val: dict[str, float] = {}
    for key, value in metrics.items():
        if key.startswith("val/"):
            val[key.removeprefix("val/")] = float(value)
        elif key.startswith("metrics/") or "accuracy" in key:
            val[_rename(key)] = float(value)
    return train, val
