"""What a worker keeps on its own disk, as the workers API shows it: the size of its caches and the space
left on the file system of its data dir (where caches, runs and downloads all go)."""

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

# Under the data dir: the dataset cache (cache/datasets) and the weights cache (workers/weights_cache.py).
CACHE_FOLDERS = ("cache", "weights-cache")
# Walking a cache of many thousand files takes a while: the presence beat reuses the figure this long.
WALK_EVERY_SECONDS = 30.0


def folder_bytes(root: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """The bytes of the files under `root`, links not followed; 0 when it does not exist. A file with
    several hard links (the dataset cache keeps unchanged files of a repaired entry so) counts once
    across the calls that share `seen`."""
    seen = set() if seen is None else seen
    total = 0
    folders = [root]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            stat = entry.stat(follow_symlinks=False)
                            if stat.st_nlink > 1:
                                if (stat.st_dev, stat.st_ino) in seen:
                                    continue
                                seen.add((stat.st_dev, stat.st_ino))
                            total += stat.st_size
                    except OSError:
                        continue  # evicted while we looked
        except OSError:
            continue  # missing, or removed while we walked
    return total


def existing_parent(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists (a worker may report before it made its data dir)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


class DiskMeter:
    """The figures of a worker's registry entry: `cache_bytes` from a walk at most every `walk_every`
    seconds, `disk_free_bytes` and `disk_total_bytes` fresh at each call (one statvfs)."""

    def __init__(
        self,
        data_dir: Path,
        walk_every: float = WALK_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data_dir = data_dir
        self.walk_every = walk_every
        self.clock = clock
        self.cache_bytes: int | None = None
        self._walked_at = 0.0

    def walk_if_due(self) -> None:
        """Measure the caches again if the last walk is older than `walk_every` (or there was none)."""
        now = self.clock()
        if self.cache_bytes is None or now - self._walked_at >= self.walk_every:
            seen: set[tuple[int, int]] = set()
            self.cache_bytes = sum(folder_bytes(self.data_dir / folder, seen) for folder in CACHE_FOLDERS)
            self._walked_at = now

    def report(self) -> dict[str, int | None]:
        """The latest cache figure (None before the first walk) and the disk's free and total bytes
        (None when the file system cannot be asked)."""
        figures = {"cache_bytes": self.cache_bytes, "disk_free_bytes": None, "disk_total_bytes": None}
        try:
            usage = shutil.disk_usage(existing_parent(self.data_dir))
        except OSError:
            return figures
        return {**figures, "disk_free_bytes": usage.free, "disk_total_bytes": usage.total}
