"""Checks that a YOLO dataset folder named in a request exists and is usable, before any row is written."""

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from app.core.errors import invalid
from app.core.settings import get_settings
from app.training.data_yaml import problems as split_problems

FIELD = "dataset_path"
MAX_PATH = 4096  # PATH_MAX of Linux: longer is never a folder
# What to do about a folder the server cannot use; no server path in it (app/core/visibility.py).
HINT = (
    "a relative path starts at the server's storage root (TRAINYARD_DATA_DIR/storage); to use a folder "
    "elsewhere, start the server with TRAINYARD_IMPORT_ROOTS=<that folder or a parent>"
)


def where(path: Path, server_paths: bool) -> str:
    """For a key that sees every project (it may see any folder the server may read), the path as the
    server resolved it and the roots it may come from; for any other key nothing (app/core/visibility.py:
    no server paths)."""
    if not server_paths:
        return ""
    settings = get_settings()
    imports = ", ".join(str(r) for r in settings.resolved_import_roots) or "none"
    return f" (resolved to {path}; storage root {settings.resolved_storage_root}; import roots: {imports})"


def locate_dataset_path(raw: str, server_paths: bool = False) -> Path:
    """Where `raw` points: relative to the storage root, or absolute under the storage root or an import
    root (TRAINYARD_IMPORT_ROOTS); never anywhere else, whatever links or `..` it goes through. Says
    nothing about what is there, so a caller can check who may see it first. `server_paths`: the caller
    may be told absolute server paths (`where`)."""
    if "\x00" in raw or not raw.strip():
        raise invalid(FIELD, "must be a folder path")
    if len(raw) > MAX_PATH:
        raise invalid(FIELD, f"longer than {MAX_PATH} characters")
    settings = get_settings()
    root = settings.resolved_storage_root
    try:
        candidate = Path(raw).expanduser()
        path = (candidate if candidate.is_absolute() else root / candidate).resolve()
    except RuntimeError as exc:  # `~someone` for a user this server does not have; a loop of links
        raise invalid(FIELD, "cannot be resolved (an unknown user's '~', or links in a loop)") from exc
    if candidate.is_absolute():
        allowed = [root, *settings.resolved_import_roots]
        if not any(path.is_relative_to(r) for r in allowed):
            reason = f"{raw!r}{where(path, server_paths)} is outside the storage root and the import roots"
            raise invalid(FIELD, f"{reason}; {HINT}")
    elif not path.is_relative_to(root):
        raise invalid(FIELD, "a relative path must stay inside the storage root")
    return path


def dataset_ref(path: Path) -> str:
    """How a job names its folder: inside storage by its key, which every host resolves through its own
    storage (workers/datasets.py); in an import root by its absolute path, as on the worker's host."""
    root = get_settings().resolved_storage_root
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def check_dataset_folder(path: Path, raw: str, task_type: str, server_paths: bool = False) -> Path:
    """The located folder exists and has the layout `task_type` trains from (422 naming the field)."""
    try:
        if not path.is_dir():
            raise invalid(FIELD, f"folder {raw!r}{where(path, server_paths)} does not exist; {HINT}")
        if task_type == "classification":
            _check_classification(path, raw)
        else:
            _check_data_yaml(path, raw)
    except OSError as exc:  # a name too long for the file system, a folder it may not read
        raise invalid(FIELD, f"folder {raw!r} cannot be read ({exc.strerror or 'I/O error'})") from exc
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
        stat = data_yaml.stat()
        data: Any = _parsed(str(data_yaml), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
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
    if isinstance(names, dict) and not _class_ids(names):
        raise invalid(FIELD, f"data.yaml names must map the class ids 0..{len(names) - 1} to names")
    reasons = split_problems(path, data, readable_from(path))
    if reasons:
        raise invalid(FIELD, "; ".join(reasons))


@lru_cache(maxsize=256)
def _parsed(path: str, _inode: int, _size: int, _mtime_ns: int, _ctime_ns: int) -> Any:
    """The data.yaml at `path`, parsed once per version of the file (a client submitting many jobs on one
    folder should not cost a parse each). Callers only read the result. What it names is checked anew
    on every request (`split_problems`), since its folders may change without it."""
    return yaml.safe_load(Path(path).read_text())


def readable_from(folder: Path) -> Callable[[Path], bool]:
    """What a data.yaml in `folder` may point to. In storage: its project's folder when it is in one (a
    key that may use this folder may not see the others), all of storage when it is not (only keys for
    every project see that); nothing from a folder outside storage. Outside storage: the import roots,
    which the operator shares with every key."""
    settings = get_settings()
    root, imports = settings.resolved_storage_root, settings.resolved_import_roots
    scope: Path | None = None  # a folder outside storage reaches nothing in it
    if folder.is_relative_to(root):
        parts = folder.relative_to(root).parts
        scope = root / "projects" / parts[1] if len(parts) >= 2 and parts[0] == "projects" else root

    def readable(path: Path) -> bool:
        if path.is_relative_to(root):
            return scope is not None and path.is_relative_to(scope)
        return any(path.is_relative_to(r) for r in imports)

    return readable


def _class_ids(names: dict[Any, Any]) -> bool:
    """The keys are exactly the integers 0..N-1 (what Ultralytics indexes classes by)."""
    integers = all(isinstance(k, int) and not isinstance(k, bool) for k in names)
    return integers and set(names) == set(range(len(names)))
