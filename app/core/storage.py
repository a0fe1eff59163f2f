"""Storage by key (DESIGN.md layout): a local folder by default; every write is atomic."""

import os
import shutil
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from app.core.settings import get_settings


class UnsafeKey(ValueError):
    pass


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file behind a key; a key can never point outside the root."""
        if not key or key.startswith("/") or "\\" in key or any(p in {"..", "."} for p in key.split("/")):
            raise UnsafeKey(f"unsafe storage key {key!r}")
        return self.root / key

    def put_file(self, key: str, source: Path) -> int:
        """Copy `source` under `key`; readers see the old file or the new one, never a torn one."""
        with source.open("rb") as src:
            return self._write(key, lambda out: shutil.copyfileobj(src, out, 1024 * 1024))

    def put_bytes(self, key: str, data: bytes) -> int:
        return self._write(key, lambda out: out.write(data))

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> int:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target.stat().st_size

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def get_file(self, key: str, target: Path) -> Path:
        """Make the object available as a local file (a plain copy for local storage)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(key), target)
        return target


@lru_cache
def get_storage() -> LocalStorage:
    return LocalStorage(get_settings().resolved_storage_root)
