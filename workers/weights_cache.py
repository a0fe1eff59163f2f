"""A worker's disk cache of weight files, by content: fetched through storage (local or S3) once per
sha256, bounded in size, least recently used evicted. Several worker processes may share the folder:
files appear whole (download beside, then rename) and a file in use is at worst fetched again."""

import contextlib
import hashlib
import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from app.core.settings import get_settings
from app.core.storage import Storage


class WeightsMismatch(Exception):
    """What storage returned is not the content the registry recorded."""


class WeightsCache:
    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = root
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()

    def fetch(self, storage: Storage, key: str, sha256: str) -> Path:
        """The file of `key` on local disk, checked against `sha256`."""
        target = self.root / f"{sha256}.pt"
        with self._lock:
            if target.is_file():
                os.utime(target)  # most recently used
                return target
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".fetch-")
            os.close(fd)
            try:
                storage.get_file(key, Path(tmp))
                if file_sha256(Path(tmp)) != sha256:
                    raise WeightsMismatch(
                        f"storage key {key} does not hold the recorded content {sha256[:12]}"
                    )
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
            self._evict(keep=target)
            return target

    def _evict(self, keep: Path) -> None:
        files = []
        for path in self.root.glob("*.pt"):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.limit_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache
def get_weights_cache() -> WeightsCache:
    """This worker's cache (`TRAINYARD_WEIGHTS_CACHE_MB` in the data dir)."""
    settings = get_settings()
    return WeightsCache(settings.resolved_data_dir / "weights-cache", int(settings.weights_cache_mb * 2**20))
