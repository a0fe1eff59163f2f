"""Per-framework facts, in one registry: which trainer runs a job, where its model comes from, how its
config is resolved, whether it needs a dataset. Adding a framework is one entry here plus its trainer
(docs/trainer-contract.md). Plain data only: the API process reads it without importing any trainer.
"""

import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.configs.catalog import model_yaml
from app.configs.resolver import ResolvedConfig, resolve_config
from app.core.errors import FieldError, invalid_fields
from app.core.jobs import Framework, TaskType

ROOT = Path(__file__).resolve().parents[2]
PLAIN_SCRIPT = "examples/plain_pytorch/train.py"
# The framework-free example trainer takes three settings: type, low, high, default.
PLAIN_PARAMS: dict[str, tuple[type, float, float, int | float]] = {
    "epochs": (int, 1, 1000, 3),
    "lr": (float, 1e-6, 10.0, 0.01),
    "batch": (int, 1, 4096, 16),
}


@dataclass(frozen=True)
class FrameworkSpec:
    framework: Framework
    # How the interpreter runs the trainer: a module of ours or a script (run by the worker).
    trainer_args: tuple[str, ...]
    # The model a job builds, from its model name and task (raises a 4xx AppError when unknown).
    model_source: Callable[[str, str], str]
    # The job's resolved config from the request's overrides (422 listing every bad field).
    resolve: Callable[[str, dict[str, Any], str | None, str | None], ResolvedConfig]
    needs_dataset: bool = True
    # What its trainer imports anyway, imported ahead in the worker's spare trainer process
    # (workers/trainer_process.py); a module's `preload()`, if any, is called too.
    preload: tuple[str, ...] = ()
    # The config as it will really run on a device ("cpu", or a GPU index): what the trainer would
    # quietly change, changed before the run, so the job shows what ran.
    fit_to_device: Callable[[dict[str, Any], str], dict[str, Any]] = lambda config, device: config


def resolve_plain_config(
    task_type: str, overrides: dict[str, Any], model: str | None = None, data: str | None = None
) -> ResolvedConfig:
    """Defaults <- overrides for the plain PyTorch trainer; 422 listing every bad field."""
    errors = []
    if task_type != TaskType.CLASSIFICATION:
        errors.append(FieldError("task_type", "the plain pytorch trainer only does classification"))
    for key, value in overrides.items():
        if key not in PLAIN_PARAMS:
            errors.append(FieldError(f"config.{key}", f"unknown key; valid: {', '.join(PLAIN_PARAMS)}"))
            continue
        kind, low, high, _ = PLAIN_PARAMS[key]
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (kind is int and not isinstance(value, int)):
            expected = "an integer" if kind is int else "a number"
            errors.append(FieldError(f"config.{key}", f"must be {expected}"))
        elif not low <= value <= high:
            errors.append(FieldError(f"config.{key}", f"must be between {low:g} and {high:g}"))
    if errors:
        raise invalid_fields(errors)
    values = {key: overrides.get(key, default) for key, (_, _, _, default) in PLAIN_PARAMS.items()}
    return ResolvedConfig(
        values=values,
        yaml_header="# Trainyard resolved training config: framework=pytorch task=classification\n",
        command=lambda v: f"CONFIG={shlex.quote(json.dumps(v))} python {PLAIN_SCRIPT}",
    )


def _resolve_ultralytics(
    task_type: str, overrides: dict[str, Any], model: str | None, data: str | None
) -> ResolvedConfig:
    return resolve_config(
        Framework.ULTRALYTICS, task_type, overrides=overrides, mode="developer", model=model, data=data
    )


def _fit_ultralytics(config: dict[str, Any], device: str) -> dict[str, Any]:
    """Ultralytics trains on a CPU without loader workers or mixed precision, and never starts more
    loader workers than the machine has cores."""
    fitted = dict(config)
    if device == "cpu":
        fitted.update({key: value for key, value in (("workers", 0), ("amp", False)) if key in fitted})
    elif isinstance(fitted.get("workers"), int):
        fitted["workers"] = min(fitted["workers"], os.cpu_count() or 1)
    return fitted


FRAMEWORKS: dict[Framework, FrameworkSpec] = {
    Framework.ULTRALYTICS: FrameworkSpec(
        Framework.ULTRALYTICS,
        trainer_args=("-m", "workers.ultralytics.trainer"),
        preload=("workers.ultralytics.trainer",),
        model_source=model_yaml,  # from the catalog (configs/models.yaml)
        resolve=_resolve_ultralytics,
        fit_to_device=_fit_ultralytics,
    ),
    # A trainer that talks only to the contract: its script builds its own network.
    Framework.PYTORCH: FrameworkSpec(
        Framework.PYTORCH,
        trainer_args=(str(ROOT / PLAIN_SCRIPT),),
        model_source=lambda model_name, task: PLAIN_SCRIPT,
        resolve=resolve_plain_config,
        needs_dataset=False,  # it generates its data
        preload=("torch",),
    ),
}


def framework(name: str) -> FrameworkSpec:
    return FRAMEWORKS[Framework(name)]


def preload_modules() -> tuple[str, ...]:
    """What a spare trainer process imports before it knows its job's framework: every framework's."""
    return tuple(dict.fromkeys(module for spec in FRAMEWORKS.values() for module in spec.preload))
