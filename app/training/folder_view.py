"""A dataset folder as the submission checks read it (app/training/dataset_check.py): a folder on the
API's host, or a folder of the S3 bucket seen through its listing (one a user synced straight into the
bucket, which the API host never had). Both answer in absolute paths, a storage key standing for the path
it would have under the local storage root, so the rules (data.yaml, its splits, what it may reach, the
classification layout) are written once, whichever view they run over.
"""

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import yaml

from app.core.settings import get_settings
from app.core.storage import Storage


class FolderView(Protocol):
    folder: Path  # the dataset's folder
    scope: str  # what a data.yaml in it may point to (`readable`), in words

    def readable(self, path: Path) -> bool: ...
    def resolve(self, path: Path) -> Path: ...
    def exists(self, path: Path) -> bool: ...
    def is_dir(self, path: Path) -> bool: ...
    def is_file(self, path: Path) -> bool: ...
    def subfolders(self, path: Path) -> list[str]: ...
    def load_yaml(self, path: Path) -> Any: ...


class LocalFolder:
    """A folder on this host; links are followed, as the trainer will follow them."""

    scope = "its project's folder, or an import root"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.readable = readable_from(folder)

    def resolve(self, path: Path) -> Path:
        return path.resolve()

    def exists(self, path: Path) -> bool:
        return path.exists()

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def is_file(self, path: Path) -> bool:
        return path.is_file()

    def subfolders(self, path: Path) -> list[str]:
        return sorted(p.name for p in path.iterdir() if p.is_dir())

    def load_yaml(self, path: Path) -> Any:
        stat = path.stat()
        return _parsed(str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


class ListedFolder:
    """A folder of the bucket: the objects under its key, listed once. S3 has no folders: one exists when
    an object's key runs through it (or a console's empty `name/` marker names it). A worker downloads this
    folder and nothing else (workers/datasets.py), so a data.yaml may point only inside it."""

    scope = "its own folder in the bucket, all that a worker downloads"

    def __init__(self, storage: Storage, root: Path, folder: Path) -> None:
        self.storage, self.root, self.folder = storage, root, folder
        self.files: set[Path] = set()
        self.dirs: set[Path] = set()
        for item in storage.listing(folder.relative_to(root).as_posix()):
            path = root / item.key
            (self.dirs if item.key.endswith("/") else self.files).add(path)
            self.dirs.update(p for p in path.parents if p.is_relative_to(folder))

    def readable(self, path: Path) -> bool:
        return path.is_relative_to(self.folder)

    def resolve(self, path: Path) -> Path:
        return Path(os.path.normpath(path))  # keys have no links: `..` is only a step up

    def exists(self, path: Path) -> bool:
        return path in self.files or path in self.dirs

    def is_dir(self, path: Path) -> bool:
        return path in self.dirs

    def is_file(self, path: Path) -> bool:
        return path in self.files

    def subfolders(self, path: Path) -> list[str]:
        return sorted(d.name for d in self.dirs if d.parent == path)

    def load_yaml(self, path: Path) -> Any:
        return yaml.safe_load(self.storage.get_bytes(path.relative_to(self.root).as_posix()))


@lru_cache(maxsize=256)
def _parsed(path: str, _inode: int, _size: int, _mtime_ns: int, _ctime_ns: int) -> Any:
    """The data.yaml at `path`, parsed once per version of the file (a client submitting many jobs on one
    folder should not cost a parse each). Callers only read the result. What it names is checked anew
    on every request (app/training/data_yaml.py `problems`), since its folders may change without it."""
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
