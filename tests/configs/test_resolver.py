from typing import Any

import pytest
import yaml

from app.configs.catalog import TASKS
from app.configs.resolver import deep_merge, default_config, resolve_config
from app.core.errors import AppError


def test_nested_dicts_merge_key_by_key_and_lists_replace() -> None:
    base: dict[str, Any] = {"a": 1, "aug": {"hsv": {"h": 0.1, "s": 0.5}, "flip": 0.5}, "freeze": [0, 1, 2]}
    patch = {"aug": {"hsv": {"s": 0.9}}, "freeze": [5]}

    merged = deep_merge(base, patch)

    assert merged == {"a": 1, "aug": {"hsv": {"h": 0.1, "s": 0.9}, "flip": 0.5}, "freeze": [5]}
    assert base["aug"]["hsv"]["s"] == 0.5, "the base must not be modified"


def test_a_dict_replaces_a_scalar_and_a_scalar_replaces_a_dict() -> None:
    assert deep_merge({"x": 1}, {"x": {"y": 2}}) == {"x": {"y": 2}}
    assert deep_merge({"x": {"y": 2}}, {"x": None}) == {"x": None}


def test_overrides_win_over_base_config_which_wins_over_the_shipped_default() -> None:
    resolved = resolve_config(
        "ultralytics",
        "detection",
        overrides={"epochs": 7, "freeze": [3]},
        base_config={"epochs": 50, "mosaic": 0.5, "freeze": [0, 1, 2, 3, 4]},
    )

    assert resolved.values["epochs"] == 7
    assert resolved.values["mosaic"] == 0.5
    assert resolved.values["freeze"] == [3], "a list override replaces the base list"
    assert resolved.values["imgsz"] == default_config("ultralytics", "detection")["imgsz"]


def test_null_override_clears_an_optional_value() -> None:
    resolved = resolve_config("ultralytics", "detection", overrides={"time": None}, base_config={"time": 2.0})
    assert resolved.values["time"] is None


@pytest.mark.parametrize("task", TASKS)
def test_the_default_resolves_and_its_yaml_loads_back_to_the_values(task: str) -> None:
    resolved = resolve_config("ultralytics", task, overrides={})

    assert resolved.values == default_config("ultralytics", task)
    assert yaml.safe_load(resolved.yaml) == resolved.values
    assert resolved.warnings == []


def test_task_specific_defaults() -> None:
    assert default_config("ultralytics", "classification")["imgsz"] == 224
    assert "mask_ratio" in default_config("ultralytics", "segmentation")
    assert "mask_ratio" not in default_config("ultralytics", "detection")
    assert "kobj" in default_config("ultralytics", "pose")
    assert "mosaic" not in default_config("ultralytics", "classification")


def test_resolving_does_not_leak_into_the_next_resolution() -> None:
    first = resolve_config("ultralytics", "detection", overrides={"freeze": [1]})
    first.values["epochs"] = 999
    assert resolve_config("ultralytics", "detection", overrides={}).values["epochs"] != 999


def test_unknown_framework_and_task_are_field_errors() -> None:
    with pytest.raises(AppError) as caught:
        resolve_config("mmdet", "keypoints", overrides={})
    assert {e.field for e in caught.value.errors} == {"framework", "task"}
    assert caught.value.status == 422


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"lr0": 0.001}, "optimizer is 'auto'"),
        ({"epochs": 5}, "close_mosaic (10) >= epochs (5)"),
        ({"save_period": 500}, "no periodic checkpoint"),
        ({"time": 1.5}, "training stops after 1.5 h"),
        ({"save": False}, "cannot be registered or resumed"),
        ({"device": "cpu", "batch": -1}, "(AutoBatch) needs a CUDA GPU"),
        ({"device": "cpu"}, "amp has no effect on CPU"),
    ],
)
def test_valid_but_surprising_settings_warn(overrides: dict[str, Any], expected: str) -> None:
    warnings = resolve_config("ultralytics", "detection", overrides=overrides).warnings
    assert any(expected in w for w in warnings), warnings


def test_no_learning_rate_warning_once_an_optimizer_is_chosen() -> None:
    resolved = resolve_config("ultralytics", "detection", overrides={"lr0": 0.001, "optimizer": "AdamW"})
    assert resolved.warnings == []
