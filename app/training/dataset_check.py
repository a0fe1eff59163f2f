"""Checks that a YOLO dataset folder named in a request exists and is usable, before any row is written:
on the API's host, or in the bucket with S3 storage (app/training/folder_view.py)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.core.errors import invalid
from app.core.settings import get_settings
from app.core.storage import LocalStorage, UnsafeKey, get_storage
from app.training.data_yaml import problems as split_problems
from app.training.folder_view import FolderView, ListedFolder, LocalFolder

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


@dataclass(frozen=True)
class CheckedFolder:
    """A `dataset_path` that passed the checks, and its class names in id order. `checked` is False for
    a folder of the workers' hosts that the API's host lacks: located, never looked at (the worker that
    runs the job fails it if the folder is not there, workers/datasets.py); its classes are unknown."""

    path: Path
    classes: list[str]
    checked: bool = True


def check_dataset_folder(path: Path, raw: str, task_type: str, server_paths: bool = False) -> CheckedFolder:
    """The located folder exists and has the layout `task_type` trains from (422 naming the field), on
    this host or, with S3 storage, in the bucket (`_view`)."""
    try:
        view = _view(path)
        if view is None:
            return CheckedFolder(path, [], checked=False)
        if not view.is_dir(path):
            raise invalid(FIELD, f"folder {raw!r}{where(path, server_paths)} does not exist; {HINT}")
        if task_type == "classification":
            classes = _check_classification(view, raw)
        else:
            classes = _check_data_yaml(view, raw)
    except OSError as exc:  # a name too long for the file system, a folder it may not read
        raise invalid(FIELD, f"folder {raw!r} cannot be read ({exc.strerror or 'I/O error'})") from exc
    except UnsafeKey as exc:  # a name S3 cannot hold
        raise invalid(FIELD, f"folder {raw!r} cannot be a storage key: {exc}") from exc
    return CheckedFolder(path, classes)


def _view(path: Path) -> FolderView | None:
    """Where to look at the folder. This host's folder when it has it, and always with local storage
    (one box: the workers read the same disk). With S3 the API's host need not have it: a storage key is
    looked for in the bucket, which the workers download from; a folder in an import root names a folder
    on the workers' own hosts, which the API cannot see (None)."""
    storage = get_storage()
    if isinstance(storage, LocalStorage) or path.is_dir():
        return LocalFolder(path)
    root = get_settings().resolved_storage_root
    return ListedFolder(storage, root, path) if path.is_relative_to(root) else None


def _check_classification(view: FolderView, raw: str) -> list[str]:
    # Ultralytics classifies from an ImageFolder layout: train/<class>/..., val/<class>/...
    train = view.folder / "train"
    classes = view.subfolders(train) if view.is_dir(train) else []
    if not classes:
        raise invalid(FIELD, f"{raw!r} has no train/<class>/ folders (classification layout)")
    return classes


def _check_data_yaml(view: FolderView, raw: str) -> list[str]:
    data_yaml = view.folder / "data.yaml"
    if not view.is_file(data_yaml):
        raise invalid(FIELD, f"{raw!r} has no data.yaml")
    try:
        data: Any = view.load_yaml(data_yaml)
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
    reasons = split_problems(view, data)
    if reasons:
        raise invalid(FIELD, "; ".join(reasons))
    return [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]


def _class_ids(names: dict[Any, Any]) -> bool:
    """The keys are exactly the integers 0..N-1 (what Ultralytics indexes classes by)."""
    integers = all(isinstance(k, int) and not isinstance(k, bool) for k in names)
    return integers and set(names) == set(range(len(names)))
