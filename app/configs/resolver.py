"""Resolve a training config: shipped base <- base_config <- overrides, validated; YAML and CLI preview."""

import ast
import copy
import logging
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import yaml

from app.configs.catalog import CONFIGS_DIR, FRAMEWORKS, TASKS
from app.configs.validation import Mode, config_errors
from app.core.errors import FieldError, invalid_fields

log = logging.getLogger("operations.training")

# Ultralytics' names for our tasks, used as the TASK word of `yolo TASK MODE ARGS`.
ULTRALYTICS_TASK = {
    "detection": "detect",
    "segmentation": "segment",
    "classification": "classify",
    "pose": "pose",
}
MODEL_PLACEHOLDER = "<model.yaml>"
DATA_PLACEHOLDER = "<data.yaml>"


@dataclass
class ResolvedConfig:
    """The resolved values; their YAML and command line are rendered when first read (a job submission
    needs only the values, and rendering the YAML costs more than resolving)."""

    values: dict[str, Any]  # the full Ultralytics train kwargs, minus what the platform sets
    yaml_header: str  # a comment, so the YAML still loads as Ultralytics `cfg=`
    command: Callable[[dict[str, Any]], str]  # the command line that trains with `values`
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def yaml(self) -> str:
        return self.yaml_header + yaml.safe_dump(dict(self.values), sort_keys=False, allow_unicode=True)

    @cached_property
    def cli_preview(self) -> str:
        return self.command(self.values)


@lru_cache
def _base(framework: str, task: str) -> dict[str, Any]:
    loaded = yaml.safe_load((CONFIGS_DIR / framework / task / "default.yaml").read_text())
    return dict(loaded)


def default_config(framework: str, task: str) -> dict[str, Any]:
    """A copy of the shipped base config of `framework`/`task` (already checked to be valid)."""
    return copy.deepcopy(_base(framework, task))


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` over `base`: nested dicts merge key by key; anything else, lists included, is replaced."""
    merged = {key: _copy(value) for key, value in base.items()}
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = _copy(value)
    return merged


def _copy(value: Any) -> Any:
    # Configs hold what YAML and JSON make: only their containers can change, and most values are scalars.
    return copy.deepcopy(value) if isinstance(value, dict | list | set) else value


def resolve_config(
    framework: str,
    task: str,
    overrides: Mapping[str, Any],
    mode: Mode = "developer",
    base_config: Mapping[str, Any] | None = None,
    *,
    model: str | None = None,
    data: str | None = None,
) -> ResolvedConfig:
    """Merge `base_config` and `overrides` onto the shipped base; raise one 422 listing every bad field.

    `base_config` is a preset (e.g. the values of an earlier run) laid over the shipped default, so it may be
    partial. In user mode both it and `overrides` are limited to the safe subset. `model` and `data` only
    fill the CLI preview; without them it shows placeholders.
    """
    errors = []
    if framework not in FRAMEWORKS:
        errors.append(
            FieldError(
                "framework", f"no config schema for framework {framework!r}; valid: {', '.join(FRAMEWORKS)}"
            )
        )
    if task not in TASKS:
        errors.append(FieldError("task", f"unknown task {task!r}; valid: {', '.join(TASKS)}"))
    if errors:
        raise invalid_fields(errors)
    errors += config_errors(base_config or {}, task, mode, "base_config")
    errors += config_errors(overrides, task, mode, "config")
    if errors:
        raise invalid_fields(errors)

    base = deep_merge(_base(framework, task), base_config) if base_config else _base(framework, task)
    values = deep_merge(base, overrides)
    resolved = ResolvedConfig(
        values=values,
        yaml_header=f"# Trainyard resolved training config: framework={framework} task={task}\n",
        command=lambda v: cli_preview(task, v, model=model, data=data),
        warnings=_warnings(values, explicit={**(base_config or {}), **overrides}),
    )
    # The overrides say what differs from the base; rendering the whole command line for the log cost every
    # job submission as much as resolving (the preview is rendered when it is read: API, dashboard, CLI).
    log.info("resolved %s/%s config (%s mode), overrides: %s", framework, task, mode, _shown(overrides))
    return resolved


def _shown(overrides: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={_cli_value(value)}" for key, value in overrides.items()) or "none"


def _warnings(values: Mapping[str, Any], explicit: Mapping[str, Any]) -> list[str]:
    """Settings that are valid but will not do what the user probably expects."""
    found = []
    ignored = [k for k in ("lr0", "momentum", "warmup_bias_lr") if k in explicit]
    if values.get("optimizer") == "auto" and ignored:
        found.append(f"optimizer is 'auto', which picks its own learning rate: {', '.join(ignored)} ignored")
    epochs = values.get("epochs", 0)
    if values.get("mosaic", 0) > 0 and values.get("close_mosaic", 0) >= epochs:
        found.append(f"close_mosaic ({values['close_mosaic']}) >= epochs ({epochs}): mosaic is never used")
    if values.get("save_period", -1) > epochs:
        found.append(f"save_period ({values['save_period']}) > epochs ({epochs}): no periodic checkpoint")
    if values.get("time") is not None:
        found.append(f"time is set: training stops after {values['time']} h, whatever epochs says")
    if values.get("save") is False:
        found.append("save is false: no best.pt or last.pt, so the run cannot be registered or resumed")
    if str(values.get("device")) == "cpu":
        if values.get("batch") == -1:
            found.append(
                "batch -1 (AutoBatch) needs a CUDA GPU; on CPU Ultralytics falls back to a default batch"
            )
        if values.get("amp") in (True, "fp16"):
            found.append("fp16 amp has no effect on CPU (Ultralytics turns it off)")
    return found


# -- CLI preview: each value is written so that Ultralytics' own `smart_value` parses it back unchanged --

_SHELL_SAFE = re.compile(r"[\w@%+=:,./-]+")


def _parses_as_itself(text: str) -> bool:
    """Whether Ultralytics' CLI would read the bare `text` back as this same string."""
    if (
        not text
        or text != text.strip()
        or text.lower() in {"none", "true", "false"}
        or "[" in text
        or "]" in text
    ):
        return False
    if "." in text and text.rpartition(".")[2].isupper():  # smart_value reads module.CONSTANT as a number
        return False
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return True
    return False


def _literal(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_literal(k)}:{_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _cli_value(value: Any) -> str:
    if isinstance(value, str):
        return value if _parses_as_itself(value) else repr(value)
    return _literal(value)


def _shell_word(word: str) -> str:
    if _SHELL_SAFE.fullmatch(word):
        return word
    # Double quotes keep the Python-literal single quotes readable; fall back to shlex when they cannot.
    return f'"{word}"' if not set(word) & set('"$`\\!') else shlex.quote(word)


def cli_preview(
    task: str, values: Mapping[str, Any], *, model: str | None = None, data: str | None = None
) -> str:
    """A `yolo TASK train ...` command line that trains with exactly `values`."""
    args = {"model": model or MODEL_PLACEHOLDER, "data": data or DATA_PLACEHOLDER, **values}
    words = [f"{key}={_cli_value(value)}" for key, value in args.items()]
    return " ".join(["yolo", ULTRALYTICS_TASK[task], "train", *(_shell_word(w) for w in words)])
