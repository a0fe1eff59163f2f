"""Checks that a YOLO dataset folder named in a request exists and is usable, before any row is written."""

from pathlib import Path
from typing import Any

import yaml

from app.core.errors import invalid
from app.core.settings import get_settings

FIELD = "dataset_path"


def resolve_dataset_path(raw: str, task_type: str) -> Path:
    """Relative to the storage root, or absolute under the storage root or an import root
    (TRAINYARD_IMPORT_ROOTS); never anywhere else, whatever links or `..` it goes through."""
    if "\x00" in raw or not raw.strip():
        raise invalid(FIELD, "must be a folder path")
    settings = get_settings()
    root = settings.resolved_storage_root
    candidate = Path(raw).expanduser()
    if candidate.is_absolute():
        path = candidate.resolve()
        allowed = [root, *settings.resolved_import_roots]
        if not any(path.is_relative_to(r) for r in allowed):
            raise invalid(
                FIELD,
                "an absolute path must be inside the storage root or an import root (TRAINYARD_IMPORT_ROOTS)",
            )
    else:
        path = (root / candidate).resolve()
        if not path.is_relative_to(root):
            raise invalid(FIELD, "a relative path must stay inside the storage root")
    if not path.is_dir():
        raise invalid(FIELD, f"folder {raw!r} does not exist")
    if task_type == "classification":
        _check_classification(path, raw)
    else:
        _check_data_yaml(path, raw)
    return path


def _check_classification(path: Path, raw: str) -> None:
    # Ultralytics classifies from an ImageFolder layout: train/<class>/..., val/<class>/...
    train = path / "train"
    if not train.is_dir() or not any(p.is_dir() for p in train.iterdir()):
        raise invalid(FIELD, f"{raw!r} has no train/<class>/ folders (classification layout)")


def _check_data_yaml(path: Path, raw: str) -> None:
    data_yaml = path / "data.yaml"
    if not data_yaml.is_file():
        raise invalid(FIELD, f"{raw!r} has no data.yaml")
    try:
        data: Any = yaml.safe_load(data_yaml.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise invalid(FIELD, f"data.yaml is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise invalid(FIELD, "data.yaml must be a mapping with train, val and names")
    missing = [key for key in ("train", "val", "names") if key not in data]
    if missing:
        raise invalid(FIELD, f"data.yaml lacks {', '.join(missing)}")
    names = data["names"]
    if not isinstance(names, dict | list) or not names:
        raise invalid(FIELD, "data.yaml names must be a non-empty list or id -> name mapping")
