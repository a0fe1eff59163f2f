"""The model catalog (`configs/models.yaml`): which models a job may start from, per task.

Read as plain YAML so the API process never imports ultralytics (and with it torch).
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml

from app.core.errors import AppError, ErrorCode, invalid
from app.core.jobs import Framework, TaskType

ModelSource = Literal["architecture", "checkpoint"]

# The order the catalog and its messages list tasks in.
TASKS: tuple[TaskType, ...] = (
    TaskType.DETECTION,
    TaskType.SEGMENTATION,
    TaskType.CLASSIFICATION,
    TaskType.POSE,
)
# The frameworks with a config schema under configs/ (the plain example trainer has its own three keys).
FRAMEWORKS: tuple[Framework, ...] = (Framework.ULTRALYTICS,)

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class CatalogModel:
    """One entry of the catalog; `model_yamls[task]` is None when the weights come from a checkpoint."""

    name: str
    framework: str
    source: ModelSource
    scale: str | None
    description: str
    model_yamls: dict[str, str | None]

    @property
    def tasks(self) -> list[str]:
        return [t for t in TASKS if t in self.model_yamls]


@lru_cache
def _load(path: Path = CONFIGS_DIR / "models.yaml") -> tuple[CatalogModel, ...]:
    raw = yaml.safe_load(path.read_text())
    models = tuple(
        CatalogModel(
            name=str(m["name"]),
            framework=str(m["framework"]),
            source=m["source"],
            scale=m.get("scale"),
            description=str(m["description"]),
            model_yamls=dict(m["model_yamls"]),
        )
        for m in raw["models"]
    )
    # A malformed catalog is our bug, not the user's: fail loudly at first use.
    for m in models:
        if m.source not in ("architecture", "checkpoint") or not set(m.model_yamls) <= set(TASKS):
            raise RuntimeError(f"configs/models.yaml: bad entry {m.name!r}")
    return models


def catalog() -> list[CatalogModel]:
    """Every model a training job can start from."""
    return list(_load())


def find_model(model_name: str) -> CatalogModel:
    """The catalog entry called `model_name`, or a 404 problem."""
    for m in _load():
        if m.name == model_name:
            return m
    names = ", ".join(m.name for m in _load())
    raise AppError(404, ErrorCode.NOT_FOUND, f"model {model_name!r} is not in the catalog; known: {names}")


def model_yaml(model_name: str, task: str) -> str:
    """The Ultralytics model YAML that builds `model_name` for `task` (422 on an unknown combination)."""
    valid = [m.name for m in _load() if m.model_yamls.get(task)]
    entry = next((m for m in _load() if m.name == model_name), None)
    if entry is not None and entry.source == "checkpoint" and task in entry.model_yamls:
        raise invalid("model_name", f"{model_name!r} starts from a checkpoint, not a model YAML")
    name = entry.model_yamls.get(task) if entry is not None else None
    if name is None:
        where = (
            f"for task {task!r}" if task in TASKS else f"(unknown task {task!r}; tasks: {', '.join(TASKS)})"
        )
        raise invalid("model_name", f"unknown model {model_name!r} {where}; valid: {', '.join(valid)}")
    return name
