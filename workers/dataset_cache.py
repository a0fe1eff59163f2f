"""A worker's disk cache of folders by content (issue 16): what training reads from local disk, e.g. a
dataset version's folder keyed by its manifest sha256. A second job on the same data downloads nothing;
every use checks the folder against the listing recorded when it was filled; the cache stays within its
bound by evicting the least recently used entries no job is using. Worker processes on one host share it.

Layout under the root (keys start with a letter or digit, so they never meet the dot-folders):

    <key>/files/...          the entry's files (`Pinned.path`)
    <key>/listing.json       {relative path: [size, sha256, mtime_ns, inode]}, recorded at fill time
    <key>/used               the entry's byte total; its mtime is its last use (the LRU order)
    .locks/<key>.pin         flock: shared while an open holds the entry, exclusive (non-blocking) to evict
    .locks/<key>.fill        flock: exclusive while the entry is filled or repaired
    .tmp/<key>~<token>/      a fill in progress, or an entry on its way out

Two locks per key, so that an open pins (shared) before it looks and keeps that pin through its fill:
flock's exclusive→shared conversion is not atomic, and an evictor in that gap could delete a fresh entry.
Lock files are never deleted (one empty file per key ever cached): deleting one while another process
waits on it would let two processes hold "the" lock.

The bound (`limit_bytes`) is exceeded only by entries in use: after a fill the least recently used
entries are evicted, but never a pinned one; when pinned entries alone exceed the limit they stay (a
warning is logged) and go as they are closed.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from app.core.settings import get_settings

log = logging.getLogger("operations.training")

KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", re.ASCII)

Fill = Callable[[Path], Mapping[str, str] | None]


class CacheCorrupt(ValueError):
    """Content does not match the sha256 it must have (a fetch, or a repair that did not restore a file)."""


class Recorded(NamedTuple):
    size: int
    sha256: str
    mtime_ns: int
    inode: int

    def same_stat(self, stat: os.stat_result) -> bool:
        """Unchanged since recorded, as far as stat can tell (then the file is not hashed again)."""
        return (self.size, self.mtime_ns, self.inode) == (stat.st_size, stat.st_mtime_ns, stat.st_ino)


Listing = dict[str, Recorded]


class Pinned:
    """An open entry: its folder is not evicted until `close()`."""

    def __init__(self, path: Path, filled: bool, pin_fd: int, cache: "FolderCache") -> None:
        self.path = path
        self.filled = filled  # this open filled or repaired the entry
        self._pin_fd: int | None = pin_fd
        self._cache = cache

    def close(self) -> None:
        if self._pin_fd is not None:
            os.close(self._pin_fd)  # closing the descriptor releases its flock
            self._pin_fd = None
            self._cache.trim()

    def __enter__(self) -> "Pinned":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class FolderCache:
    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = root
        self.limit_bytes = limit_bytes

    def open(self, key: str, fill: Fill) -> Pinned:
        """The verified folder of `key`, pinned until closed. On a miss, `fill(folder)` writes the entry's
        files into an empty temp folder and may return {relative path: sha256} for files it verified (the
        rest are hashed here). On a repair (files of the entry missing or changed) the folder holds the good
        files and `fill` must fetch only what is missing: the files present are hard links shared with
        the live entry, so writing into them would change it (`fetch_all` skips them). Files that are not
        in the listing (Ultralytics' `labels.cache`) are ignored."""
        if not KEY.fullmatch(key):
            raise ValueError(f"cache key {key!r} is not [A-Za-z0-9][A-Za-z0-9._-]{{0,199}}")
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        (self.root / ".tmp").mkdir(exist_ok=True)
        pin_fd = _lock(self._lock_file(key, "pin"), fcntl.LOCK_SH)
        try:
            entry = self.root / key
            listing = _read_listing(entry)
            filled = False
            if listing is None or not all(
                _stat_matches(entry / "files" / rel, rec) for rel, rec in listing.items()
            ):
                with _locked(self._lock_file(key, "fill")):
                    filled = self._fill_or_repair(key, fill)
            now = time.time_ns()  # finer than the file system's clock, so opens in a row keep their order
            os.utime(entry / "used", ns=(now, now))
            if filled:
                self._evict(keep=key)
        except BaseException:
            os.close(pin_fd)
            raise
        return Pinned(entry / "files", filled, pin_fd, self)

    def total_bytes(self) -> int:
        """The bytes of every entry, as recorded at fill time."""
        return sum(size for _, _, size in self._entries())

    def trim(self) -> None:
        """Back within the bound if only entries in use kept the cache over it (called when one closes)."""
        if self.total_bytes() > self.limit_bytes:
            self._evict(keep=None)

    def _fill_or_repair(self, key: str, fill: Fill) -> bool:
        """Under the key's fill lock: another open may have filled or repaired the entry meanwhile, so
        look again (hashing what stat cannot vouch for); fill or repair it if still needed."""
        entry = self.root / key
        listing = _read_listing(entry)
        good: Listing = {}
        if listing is not None:
            good = _verify(entry / "files", listing)
            if len(good) == len(listing):
                if good != listing:  # touched but intact: remember the new stat, hash no more
                    _write_records(entry, good)
                return False
        tmp = self.root / ".tmp" / f"{key}~{uuid.uuid4().hex}"
        try:
            files = tmp / "files"
            files.mkdir(parents=True)
            for rel, recorded in list(good.items()):
                (files / rel).parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    os.link(entry / "files" / rel, files / rel, follow_symlinks=False)
                if not _stat_matches(files / rel, recorded):  # gone or replaced since verified: fetch it
                    (files / rel).unlink(missing_ok=True)
                    del good[rel]
            fresh = _record(files, good, fill(files) or {})
            for rel, old in (listing or {}).items():
                if rel not in fresh or fresh[rel].sha256 != old.sha256:
                    raise CacheCorrupt(f"cache entry {key}: after the repair {rel} is not {old.sha256}")
            if listing is None:
                self._discard(entry, key)  # a stray folder without a listing
                _write_records(tmp, fresh)
                tmp.rename(entry)  # the whole entry appears at once
            else:
                _move_fetched(files, entry / "files", fresh, good)
                _write_records(entry, fresh)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True

    def _evict(self, keep: str | None) -> None:
        """Least recently used first, until within the limit; entries in use (or just filled) stay."""
        self._remove_temps()
        entries = sorted(self._entries())
        total = sum(size for _, _, size in entries)
        for _, key, size in entries:
            if total <= self.limit_bytes:
                return
            if key != keep and self._evict_one(key):
                total -= size
        if total > self.limit_bytes:
            log.warning(
                "folder cache %s holds %d bytes, over its limit of %d: the entries in use stay",
                self.root,
                total,
                self.limit_bytes,
            )

    def _evict_one(self, key: str) -> bool:
        pin_fd = _try_exclusive(self._lock_file(key, "pin"))
        if pin_fd is None:
            return False
        try:
            fill_fd = _try_exclusive(self._lock_file(key, "fill"))
            if fill_fd is None:
                return False
            try:
                self._discard(self.root / key, key)
            finally:
                os.close(fill_fd)
        finally:
            os.close(pin_fd)
        return True

    def _entries(self) -> Iterator[tuple[int, str, int]]:
        """(last use in ns, key, bytes) of each entry."""
        for path in self.root.glob("[!.]*"):
            try:
                yield (path / "used").stat().st_mtime_ns, path.name, int((path / "used").read_text())
            except (OSError, ValueError):
                continue  # evicted meanwhile, or not an entry

    def _discard(self, path: Path, key: str) -> None:
        """Out of sight at once (a rename), then deleted: a crash in between leaves only a temp folder."""
        if path.exists():
            gone = self.root / ".tmp" / f"{key}~{uuid.uuid4().hex}"
            path.rename(gone)
            shutil.rmtree(gone, ignore_errors=True)

    def _remove_temps(self) -> None:
        """Temp folders of keys that nobody is filling (or evicting) were left by a crash."""
        for tmp in (self.root / ".tmp").glob("*~*"):
            fill_fd = _try_exclusive(self._lock_file(tmp.name.split("~")[0], "fill"))
            if fill_fd is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                os.close(fill_fd)

    def _lock_file(self, key: str, kind: str) -> Path:
        return self.root / ".locks" / f"{key}.{kind}"


def fetch_all(
    folder: Path,
    items: Iterable[tuple[str, str | None]],
    fetch_one: Callable[[str, Path], object],
    workers: int = 16,
) -> dict[str, str]:
    """For a `fill`: fetch each (relative path, sha256 or None) not already in `folder` (on a repair the
    files present are good, and shared with the live entry), `workers` at a time; `fetch_one(rel, target)`
    writes the file. Raises CacheCorrupt when a fetched file does not match its sha256. Returns
    {relative path: sha256} of what was fetched, for `fill` to return."""

    def fetch(rel: str, expected: str | None) -> tuple[str, str]:
        target = _inside(folder, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        fetch_one(rel, target)
        actual = _sha256(target)
        if expected is not None and actual != expected:
            target.unlink()
            raise CacheCorrupt(f"fetched {rel} has sha256 {actual}, expected {expected}")
        return rel, actual

    missing = [(rel, sha) for rel, sha in dict(items).items() if not os.path.lexists(_inside(folder, rel))]
    fetched: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fetch, rel, sha) for rel, sha in missing]
        try:
            for future in as_completed(futures):
                rel, sha = future.result()
                fetched[rel] = sha
        except BaseException:
            for future in futures:
                future.cancel()  # the fill fails: fetch no more
            raise
    return fetched


@lru_cache
def get_dataset_cache() -> FolderCache:
    """This worker's dataset cache (`TRAINYARD_CACHE_MAX_GB` in the data dir)."""
    settings = get_settings()
    return FolderCache(settings.resolved_data_dir / "cache" / "datasets", int(settings.cache_max_gb * 2**30))


def _inside(folder: Path, rel: str) -> Path:
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise ValueError(f"{rel!r} is not a relative path inside the folder")
    return folder.joinpath(*parts)


def _stat_matches(path: Path, recorded: Recorded) -> bool:
    try:
        return recorded.same_stat(path.stat())
    except OSError:
        return False


def _verify(files: Path, listing: Listing) -> Listing:
    """The files of `listing` still good, with their current stat; a changed stat means hashing again."""
    good: Listing = {}
    for rel, recorded in listing.items():
        try:
            stat = (files / rel).stat()
        except OSError:
            continue
        if recorded.same_stat(stat):
            good[rel] = recorded
        elif stat.st_size == recorded.size and _sha256(files / rel) == recorded.sha256:
            good[rel] = Recorded(stat.st_size, recorded.sha256, stat.st_mtime_ns, stat.st_ino)
    return good


def _record(files: Path, known: Listing, verified: Mapping[str, str]) -> Listing:
    """Every file under `files`, hashed unless `known` (same stat) or `verified` gives its sha256."""
    listing: Listing = {}
    for dirpath, _dirs, names in os.walk(files):
        for name in names:
            path = Path(dirpath, name)
            rel = path.relative_to(files).as_posix()
            stat = path.stat()
            old = known.get(rel)
            sha256 = old.sha256 if old and old.same_stat(stat) else verified.get(rel) or _sha256(path)
            listing[rel] = Recorded(stat.st_size, sha256, stat.st_mtime_ns, stat.st_ino)
    return listing


def _move_fetched(files: Path, live: Path, fresh: Listing, good: Listing) -> None:
    """A repair goes into the live entry file by file (renames keep the recorded stat): a job using the
    entry meanwhile sees the old file or the new one, never none."""
    for rel, recorded in fresh.items():
        if rel not in good or recorded.inode != good[rel].inode:
            (live / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(files / rel, live / rel)


def _write_records(entry: Path, listing: Listing) -> None:
    _write_atomic(entry / "listing.json", json.dumps({rel: list(rec) for rel, rec in listing.items()}))
    _write_atomic(entry / "used", str(sum(recorded.size for recorded in listing.values())))


def _read_listing(entry: Path) -> Listing | None:
    try:
        raw = json.loads((entry / "listing.json").read_text())
    except (OSError, ValueError):
        return None
    return {rel: Recorded(*fields) for rel, fields in raw.items()}


def _write_atomic(path: Path, text: str) -> None:
    part = path.with_name(f"{path.name}.part")
    part.write_text(text)
    os.replace(part, path)


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _lock(path: Path, operation: int) -> int:
    """A descriptor holding a flock on `path`; closing it releases the lock. Each call opens its own
    descriptor, so threads of one process exclude each other as processes do."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, operation)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _try_exclusive(path: Path) -> int | None:
    """An exclusive lock if nobody holds one at all (a pin, a fill), else None at once."""
    try:
        return _lock(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = _lock(path, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)
