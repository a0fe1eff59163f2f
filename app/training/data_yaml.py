"""Where a data.yaml's images are: its `path:` read the way Ultralytics users expect.

Ultralytics itself resolves a relative `path:` against the working directory or its own global
`datasets_dir` setting, folders the user never chose; people writing `path: .` or `path: ../shapes` mean
the data.yaml's folder. So Trainyard resolves a relative `path:` (and a missing one) against the
data.yaml's folder, checks at submission that every split it names exists where the dataset may read,
and gives the trainer a copy with absolute paths (`write_resolved`), so Ultralytics' rules never apply.

Messages quote the data.yaml's own words, never a server path (see app/core/visibility.py).
"""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # the trainer imports this module: it needs none of the API's storage
    from app.training.folder_view import FolderView

SPLITS = ("train", "val", "test")


def images_root(folder: Path, data: dict[str, Any], resolve: Callable[[Path], Path] = Path.resolve) -> Path:
    """The folder the splits are relative to: `path:` relative to the data.yaml's folder, or that folder."""
    path = data.get("path")
    if not isinstance(path, str) or not path.strip():
        return folder
    return resolve(folder / Path(path).expanduser())


def split_entries(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(split, entry) for each image folder or list file the data.yaml names (a split may list several)."""
    found = []
    for split in SPLITS:
        value = data.get(split)
        for entry in value if isinstance(value, list) else [value] if value else []:
            found.append((split, str(entry)))
    return found


def problems(view: "FolderView", data: dict[str, Any]) -> list[str]:
    """Why a job could not read the dataset in `view` (empty when it can): each split must be where the
    dataset may read (`view.readable`) and exist there."""
    outside = f"leads outside the folders this dataset may read ({view.scope})"
    root = images_root(view.folder, data, view.resolve)
    if not view.readable(root):
        return [f"data.yaml path: {data.get('path')!r} {outside}"]
    where = (
        f"under path: {data['path']!r} (read from the data.yaml's folder)"
        if data.get("path")
        else ("in the data.yaml's folder")
    )
    reasons = []
    for split, entry in split_entries(data):
        target = view.resolve(root / entry)
        if not view.readable(target):
            reasons.append(f"data.yaml {split}: {entry!r} {outside}")
        elif not view.exists(target):
            reasons.append(f"data.yaml {split}: {entry!r} does not exist {where}")
    return reasons


def write_resolved(folder: Path, target: Path) -> Path:
    """A copy of `folder`/data.yaml at `target` with an absolute `path:`, for the trainer."""
    data = yaml.safe_load((folder / "data.yaml").read_text())
    data["path"] = str(images_root(folder, data))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target
