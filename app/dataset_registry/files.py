"""File work for datasets: claiming a folder, copying a folder in, staging an upload. Nothing half-done
stays behind: every helper either completes or removes what it wrote."""

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO

from app.core.errors import AppError, ErrorCode, invalid
from app.core.storage import LocalStorage, UnsafeKey

_CHUNK = 1 << 20


def storage_path(storage: LocalStorage, key: str, field: str) -> Path:
    """The folder behind a user-given storage key; 422 for anything leaving the storage root."""
    try:
        path = storage.path(key)
    except UnsafeKey as exc:
        raise invalid(field, str(exc)) from exc
    resolved = path.resolve()
    if not resolved.is_relative_to(storage.root):
        raise invalid(field, "resolves outside storage (symbolic link?)")
    return resolved


def claim_folder(folder: Path, what: str) -> None:
    """Create `folder`, failing with 409 when it exists: whoever creates it owns it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError as exc:
        raise AppError(409, ErrorCode.CONFLICT, f"{what} already exists in storage") from exc


def save_upload(source: BinaryIO, tmp_dir: Path, max_bytes: int) -> Path:
    """Copy an uploaded stream to a temporary file, refusing (413) more than `max_bytes`."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, suffix=".upload")
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise invalid("file", f"larger than {max_bytes} bytes", status=413)
                out.write(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def copy_tree(source: Path, dest: Path) -> int:
    """Copy (hard links where possible) a folder to `dest` (absent); refuses symbolic links inside."""
    tmp = dest.parent / f".{dest.name}.copy-{uuid.uuid4().hex}"
    files = 0
    try:
        for folder, dirs, names in os.walk(source):
            rel = Path(folder).relative_to(source)
            (tmp / rel).mkdir(parents=True, exist_ok=True)
            for entry in [*dirs, *names]:
                if (Path(folder) / entry).is_symlink():
                    raise invalid("source_path", f"{rel / entry} is a symbolic link")
            for name in names:
                link_or_copy(os.path.join(folder, name), str(tmp / rel / name))
                files += 1
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return files


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_folder(folder: Path, root: Path) -> None:
    """Remove `folder` and then each parent left empty, up to (not including) `root`."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if parent == root or not parent.is_relative_to(root):
            break
        try:
            parent.rmdir()
        except OSError:
            break  # not empty (or gone): the rest of the chain is in use
