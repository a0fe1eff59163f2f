"""Our configs against the installed Ultralytics itself: its argument parser, its checks, its model YAMLs."""

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.configs.catalog import TASKS, catalog
from app.configs.resolver import ULTRALYTICS_TASK, default_config, resolve_config
from app.configs.schema import RESERVED, params_for

pytestmark = pytest.mark.usefixtures("ultralytics_env")

ROOT = Path(__file__).resolve().parents[2]


def parse_like_the_yolo_cli(command: str) -> tuple[list[str], dict[str, Any]]:
    """What `yolo ...` receives from the shell, parsed the way Ultralytics' entrypoint parses it."""
    from ultralytics.cfg import merge_equals_args, parse_key_value_pair

    argv = shlex.split(command)
    words = [a for a in argv[1:] if "=" not in a]
    pairs = dict(parse_key_value_pair(a) for a in merge_equals_args(argv[1:]) if "=" in a)
    return [argv[0], *words], pairs


CASES: list[tuple[str, dict[str, Any]]] = [
    ("detection", {}),
    (
        "segmentation",
        {"epochs": 3, "imgsz": 320, "lr0": 0.002, "optimizer": "AdamW", "freeze": [0, "23.cv2"]},
    ),
    ("classification", {"batch": 0.6, "amp": "bf16", "cache": "disk", "auto_augment": None, "dropout": 0.25}),
    (
        "pose",
        {"device": "0,1", "time": 1.5, "compile": "max-autotune-no-cudagraphs", "conf": 0.25, "seed": 7},
    ),
    (
        "detection",
        {"device": [0, 1], "batch": -1, "weight_decay": 1e-05, "channels_last": True, "freeze": 10},
    ),
]


@pytest.mark.parametrize(("task", "overrides"), CASES)
def test_cli_preview_parsed_by_ultralytics_gives_the_resolved_values(
    task: str, overrides: dict[str, Any]
) -> None:
    from ultralytics.cfg import DEFAULT_CFG_DICT, MODES, TASKS, check_dict_alignment, get_cfg

    resolved = resolve_config(
        "ultralytics", task, overrides=overrides, model="yolo11n.yaml", data="/data/my set.yaml"
    )

    words, parsed = parse_like_the_yolo_cli(resolved.cli_preview)

    assert words == ["yolo", ULTRALYTICS_TASK[task], "train"]
    assert words[1] in TASKS and words[2] in MODES
    assert parsed.pop("model") == "yolo11n.yaml" and parsed.pop("data") == "/data/my set.yaml"
    assert parsed == resolved.values
    assert all(type(parsed[k]) is type(v) for k, v in resolved.values.items()), "types survive the round trip"
    check_dict_alignment(DEFAULT_CFG_DICT, parsed)  # raises on a key Ultralytics does not know
    cfg = vars(get_cfg(DEFAULT_CFG_DICT, parsed))  # Ultralytics' own type and range checks
    assert {k: cfg[k] for k in resolved.values} == resolved.values


def test_cli_preview_without_model_and_data_shows_placeholders() -> None:
    preview = resolve_config("ultralytics", "detection", overrides={}).cli_preview
    assert '"model=<model.yaml>" "data=<data.yaml>"' in preview


@pytest.mark.parametrize("task", TASKS)
def test_base_config_is_valid_ultralytics_train_settings_and_matches_the_schema(task: str) -> None:
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    base = default_config("ultralytics", task)

    assert list(base) == [p.name for p in params_for(task)], "base YAML and schema list the same keys"
    assert set(base) <= set(DEFAULT_CFG_DICT)
    assert not set(base) & set(RESERVED)
    check_cfg(dict(base), hard=True)


def test_reserved_keys_are_ultralytics_arguments() -> None:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    assert set(RESERVED) - {"save_dir"} <= set(DEFAULT_CFG_DICT)


@pytest.mark.parametrize("model", [m for m in catalog() if m.source == "architecture"], ids=lambda m: m.name)
def test_every_catalog_model_yaml_builds_in_ultralytics_for_its_task(model: Any) -> None:
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load

    for task, name in model.model_yamls.items():
        spec = yaml_model_load(name)  # finds the file inside the installed package, offline
        assert spec["scale"] == model.scale
        assert guess_model_task(spec) == ULTRALYTICS_TASK[task]


def test_the_api_side_never_imports_ultralytics_or_torch() -> None:
    code = (
        "import sys, app.configs.router, app.configs.resolver;"
        "bad = {'ultralytics', 'torch'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
