"""Schema validation: every bad field is reported, under `config.<key>`, with a reason a user can act on."""

from typing import Any

import pytest

from app.configs.catalog import TASKS
from app.configs.resolver import default_config, resolve_config
from app.configs.schema import PARAMS, RESERVED, USER_MODE_KEYS, Kind, params_for
from app.configs.validation import Mode
from app.core.errors import AppError


def errors_of(overrides: dict[str, Any], task: str = "detection", mode: Mode = "developer") -> dict[str, str]:
    with pytest.raises(AppError) as caught:
        resolve_config("ultralytics", task, overrides=overrides, mode=mode)
    assert caught.value.status == 422
    return {e.field: e.reason for e in caught.value.errors}


# (task, key, bad value, part of the reason), one or more rows per kind of field and per group
BAD = [
    # basic group
    ("detection", "epochs", 0, "must be in [1, 10000]"),
    ("detection", "epochs", -5, "must be in [1, 10000]"),
    ("detection", "epochs", 10.5, "must be an integer, not a number"),
    ("detection", "epochs", "100", "must be an integer, not a string"),
    ("detection", "epochs", True, "must be an integer, not a boolean"),
    ("detection", "imgsz", 650, "multiple of 32 (the model's stride), got 650; try 640"),
    ("detection", "imgsz", 0, "must be in [32, 4096]"),
    ("detection", "imgsz", 8192, "must be in [32, 4096]"),
    ("detection", "imgsz", [640, 480], "must be an integer, not a list"),
    ("detection", "batch", 0, "must be >= 1, or -1 for AutoBatch"),
    ("detection", "batch", 1.5, "GPU memory fraction in (0, 1)"),
    ("detection", "batch", "16", "not a string"),
    ("detection", "lr0", 0, "must be in (0, 1]"),
    ("detection", "lr0", "0.01", "must be a number, not a string"),
    ("detection", "lr0", float("nan"), "must be a number"),
    ("detection", "optimizer", "adamw", "did you mean 'AdamW'?"),
    ("detection", "optimizer", "Lion", "must be one of 'auto', 'SGD'"),
    ("detection", "patience", -1, "must be >= 0"),
    ("detection", "device", "gpu", "must be 'cpu', 'mps' or CUDA indices"),
    ("detection", "device", -2, "CUDA index >= 0"),
    ("detection", "device", [], "non-empty list"),
    ("detection", "workers", 100, "must be in [0, 64]"),
    ("detection", "seed", -1, "must be >= 0"),
    ("detection", "amp", "fp8", "must be one of 'fp16', 'bf16', 'fp32'"),
    ("detection", "amp", 1, "must be true, false or one of"),
    ("detection", "save", "yes", "must be true or false, not a string"),
    ("detection", "save", None, "must not be null"),
    ("detection", "cache", "ssd", "must be one of 'ram', 'disk'"),
    ("detection", "save_period", -2, "must be >= -1"),
    ("detection", "pretrained", "weights/best.pt", "must be true or false"),
    # advanced group
    ("detection", "mosaic", 1.5, "must be in [0, 1]"),
    ("detection", "degrees", 200, "must be in [0, 180]"),
    ("detection", "time", 0, "must be > 0"),
    ("detection", "freeze", -1, "must be >= 0"),
    ("detection", "freeze", {"layers": 3}, "layer count or a list"),
    ("detection", "compile", "fast", "must be one of 'default'"),
    ("detection", "cos_lr", 0, "must be true or false, not an integer"),
    ("detection", "nbs", 0, "must be >= 1"),
    ("detection", "fraction", 0.0, "must be in (0, 1]"),
    ("segmentation", "mask_ratio", 0, "must be >= 1"),
    ("segmentation", "copy_paste_mode", "paste", "must be one of 'flip', 'mixup'"),
    ("classification", "dropout", 1.0, "must be in [0, 1)"),
    ("classification", "auto_augment", "trivial", "must be one of 'randaugment'"),
    ("pose", "kobj", -1.0, "must be >= 0"),
    # keys that are not parameters of this task
    ("detection", "mask_ratio", 4, "does not apply to detection; only to segmentation"),
    ("classification", "mosaic", 1.0, "does not apply to classification"),
    ("detection", "epoch", 10, "unknown parameter; did you mean 'epochs'?"),
    ("detection", "learning_rate", 0.1, "unknown parameter"),
]


@pytest.mark.parametrize(("task", "key", "value", "reason"), BAD, ids=[f"{r[1]}={r[2]!r}" for r in BAD])
def test_a_bad_value_is_rejected_with_its_reason(task: str, key: str, value: Any, reason: str) -> None:
    errors = errors_of({key: value}, task)
    assert list(errors) == [f"config.{key}"]
    assert reason in errors[f"config.{key}"]


GOOD = [
    ("detection", "batch", -1),
    ("detection", "batch", 0.7),
    ("detection", "device", "cpu"),
    ("detection", "device", "0,1"),
    ("detection", "device", 0),
    ("detection", "device", [0, 1]),
    ("detection", "amp", "bf16"),
    ("detection", "cache", "disk"),
    ("detection", "compile", True),
    ("detection", "freeze", [0, "23.cv2"]),
    ("detection", "lr0", 1),
    ("detection", "optimizer", "RMSprop"),
    ("detection", "time", 0.5),
    ("detection", "conf", None),
    ("classification", "auto_augment", None),
    ("classification", "imgsz", 96),
]


@pytest.mark.parametrize(("task", "key", "value"), GOOD, ids=[f"{r[1]}={r[2]!r}" for r in GOOD])
def test_an_accepted_value_reaches_the_resolved_values(task: str, key: str, value: Any) -> None:
    assert resolve_config("ultralytics", task, overrides={key: value}).values[key] == value


@pytest.mark.parametrize("task", TASKS)
def test_every_parameter_accepts_its_default_and_rejects_a_wrong_type(task: str) -> None:
    defaults = default_config("ultralytics", task)
    resolve_config("ultralytics", task, overrides=defaults)

    errors = errors_of({p.name: {"not": "a value"} for p in params_for(task)}, task)
    assert set(errors) == {f"config.{p.name}" for p in params_for(task)}


@pytest.mark.parametrize("param", [p for p in PARAMS if p.minimum is not None], ids=lambda p: p.name)
def test_every_lower_bound_is_enforced(param: Any) -> None:
    task = sorted(param.tasks)[0]
    below = param.minimum if param.exclusive_minimum else param.minimum - 1
    value = int(below) if param.kind == Kind.INT else float(below)
    assert f"config.{param.name}" in errors_of({param.name: value}, task)


def test_every_bad_field_is_reported_at_once() -> None:
    errors = errors_of({"epochs": 0, "imgsz": 100, "lr0": "fast", "optimiser": "SGD", "model": "yolo11n.pt"})
    assert set(errors) == {"config.epochs", "config.imgsz", "config.lr0", "config.optimiser", "config.model"}


@pytest.mark.parametrize("key", sorted(RESERVED))
def test_keys_the_platform_sets_are_rejected_with_the_reason(key: str) -> None:
    assert "set by the platform" in errors_of({key: "x"})[f"config.{key}"]


def test_user_mode_allows_exactly_the_safe_subset() -> None:
    assert set(USER_MODE_KEYS) == {"epochs", "imgsz", "batch", "amp", "patience", "save", "device"}
    safe = {
        "epochs": 20,
        "imgsz": 320,
        "batch": 8,
        "amp": False,
        "patience": 5,
        "save": True,
        "device": "cpu",
    }
    assert resolve_config("ultralytics", "detection", overrides=safe, mode="user").values["imgsz"] == 320


def test_user_mode_rejects_every_other_key_that_developer_mode_accepts() -> None:
    overrides = {"lr0": 0.001, "mosaic": 0.0, "optimizer": "SGD", "epochs": 10}

    errors = errors_of(overrides, mode="user")

    assert set(errors) == {"config.lr0", "config.mosaic", "config.optimizer"}
    assert all("not available in user mode" in r and "developer mode" in r for r in errors.values())
    assert (
        resolve_config("ultralytics", "detection", overrides=overrides, mode="developer").values["lr0"]
        == 0.001
    )


def test_user_mode_still_checks_values_of_safe_keys() -> None:
    assert "multiple of 32" in errors_of({"imgsz": 333}, mode="user")["config.imgsz"]


def test_user_mode_applies_to_base_config_too_named_as_such() -> None:
    with pytest.raises(AppError) as caught:
        resolve_config("ultralytics", "detection", overrides={}, mode="user", base_config={"mixup": 0.5})
    assert [e.field for e in caught.value.errors] == ["base_config.mixup"]
