"""The worker's folder cache (workers/dataset_cache.py) on real files, with real processes and threads
filling one entry at once: a second open fetches nothing, damage is found and only the damaged files are
fetched again, the size bound holds except for entries in use, and a failed fill leaves nothing behind."""

import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.core.settings import get_settings
from workers.dataset_cache import CacheCorrupt, FolderCache, Pinned, fetch_all, get_dataset_cache

KB = 1024
ENTRY_BYTES = 8 * KB  # what source() holds for any key


def source(key: str) -> dict[str, bytes]:
    """The files of an entry as storage holds them: four of 2 KB, different for each key."""
    return {f"images/{i}.jpg": hashlib.sha256(f"{key}/{i}".encode()).digest() * 64 for i in range(4)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Fetcher:
    """A fill that fetches `source(key)` with fetch_all. It logs to a file (so that fills in other
    processes count too) each fill and each file fetched; `release`, when given, holds the fill until set."""

    def __init__(self, key: str, log: Path, release: Any = None) -> None:
        self.files = source(key)
        self.log = log
        self.release = release

    def __call__(self, folder: Path) -> dict[str, str]:
        self._note("fill")
        if self.release is not None and not self.release.wait(timeout=120):
            raise RuntimeError("the test never released the fill")

        def fetch_one(rel: str, target: Path) -> None:
            target.write_bytes(self.files[rel])
            self._note(f"fetch {rel}")

        return fetch_all(folder, [(rel, sha256(data)) for rel, data in self.files.items()], fetch_one)

    def fills(self) -> int:
        return self._lines().count("fill")

    def fetched(self) -> list[str]:
        return sorted(line.removeprefix("fetch ") for line in self._lines() if line.startswith("fetch "))

    def _note(self, line: str) -> None:
        with self.log.open("a") as file:
            file.write(line + "\n")

    def _lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def contents(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): sha256(p.read_bytes()) for p in folder.rglob("*") if p.is_file()
    }


def expected(key: str) -> dict[str, str]:
    return {rel: sha256(data) for rel, data in source(key).items()}


def entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def fill_and_close(cache: FolderCache, key: str, log: Path) -> None:
    with cache.open(key, Fetcher(key, log)) as pinned:
        assert pinned.filled


def test_a_second_open_of_the_same_key_fetches_nothing(tmp_path: Path) -> None:
    cache, fetcher = FolderCache(tmp_path / "cache", 2**20), Fetcher("v1", tmp_path / "log")
    with cache.open("v1", fetcher) as first:
        assert first.filled
        assert contents(first.path) == expected("v1")
    with cache.open("v1", fetcher) as second:
        assert not second.filled
        assert second.path == first.path
        assert contents(second.path) == expected("v1")
    assert fetcher.fills() == 1
    assert cache.total_bytes() == ENTRY_BYTES


def open_and_report(root: str, key: str, log: str, release: Any, result: str) -> None:
    """One worker: open `key` (its fill, if it runs one, waits for `release`), write down what it got."""
    with FolderCache(Path(root), 2**20).open(key, Fetcher(key, Path(log), release)) as pinned:
        report = {"filled": pinned.filled, "path": str(pinned.path), "files": contents(pinned.path)}
        Path(result).write_text(json.dumps(report))


def blocked_on(lock_file: Path) -> bool:
    """Whether some process waits for a flock on `lock_file` (the kernel lists waiters with `->`)."""
    stat = lock_file.stat()
    file_id = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    return any(
        "->" in line and file_id in line.split() for line in Path("/proc/locks").read_text().splitlines()
    )


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120  # a bound on a broken run, not a timing the test relies on
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["processes", "threads"])
def test_two_workers_opening_a_missing_entry_at_once_fill_it_once(tmp_path: Path, how: str) -> None:
    root, log = tmp_path / "cache", tmp_path / "log"
    spawn = multiprocessing.get_context("spawn")
    release = spawn.Event() if how == "processes" else threading.Event()
    workers = [
        (spawn.Process if how == "processes" else threading.Thread)(
            target=open_and_report, args=(str(root), "v1", str(log), release, str(tmp_path / f"r{i}"))
        )
        for i in range(2)
    ]
    for worker in workers:
        worker.start()
    # One fills (and waits); the other is inside open, blocked on the entry's fill lock.
    wait_for(lambda: Fetcher("v1", log).fills() == 1 and blocked_on(root / ".locks" / "v1.fill"))
    release.set()
    for worker in workers:
        worker.join(timeout=120)
        assert getattr(worker, "exitcode", 0) == 0
    reports = [json.loads((tmp_path / f"r{i}").read_text()) for i in range(2)]
    assert Fetcher("v1", log).fills() == 1
    assert sorted(r["filled"] for r in reports) == [False, True]
    assert reports[0]["path"] == reports[1]["path"]
    assert reports[0]["files"] == reports[1]["files"] == expected("v1")
    assert entries(root) == ["v1"]
    assert list((root / ".tmp").iterdir()) == []


def test_a_corrupted_file_is_found_by_its_checksum_and_only_it_is_fetched_again(tmp_path: Path) -> None:
    cache, fetcher = FolderCache(tmp_path / "cache", 2**20), Fetcher("v1", tmp_path / "log")
    with cache.open("v1", fetcher) as pinned:
        folder = pinned.path
    kept_inode = (folder / "images/0.jpg").stat().st_ino
    damaged = folder / "images/1.jpg"
    damaged.write_bytes(b"x" * damaged.stat().st_size)  # same size, other bytes
    os.utime(damaged, ns=(0, damaged.stat().st_mtime_ns + 10**9))  # a later mtime, whatever the clock
    with cache.open("v1", fetcher) as repaired:
        assert repaired.filled
        assert contents(repaired.path) == expected("v1")
    assert fetcher.fetched() == sorted([*source("v1"), "images/1.jpg"])
    assert (folder / "images/0.jpg").stat().st_ino == kept_inode  # the good files were kept, not copied
    with cache.open("v1", fetcher) as again:
        assert not again.filled
    assert fetcher.fills() == 2


def test_a_deleted_file_is_fetched_again(tmp_path: Path) -> None:
    cache, fetcher = FolderCache(tmp_path / "cache", 2**20), Fetcher("v1", tmp_path / "log")
    with cache.open("v1", fetcher) as pinned:
        (pinned.path / "images/2.jpg").unlink()
    with cache.open("v1", fetcher) as repaired:
        assert repaired.filled
        assert contents(repaired.path) == expected("v1")
    assert fetcher.fetched() == sorted([*source("v1"), "images/2.jpg"])


def test_a_file_touched_but_unchanged_is_not_fetched_again(tmp_path: Path) -> None:
    cache, fetcher = FolderCache(tmp_path / "cache", 2**20), Fetcher("v1", tmp_path / "log")
    with cache.open("v1", fetcher) as pinned:
        touched = pinned.path / "images/3.jpg"
        os.utime(touched, ns=(0, touched.stat().st_mtime_ns + 10**9))
    with cache.open("v1", fetcher) as again:
        assert not again.filled
    assert fetcher.fills() == 1


def test_files_written_beside_the_entry_s_own_do_not_make_a_hit_a_miss(tmp_path: Path) -> None:
    cache, fetcher = FolderCache(tmp_path / "cache", 2**20), Fetcher("v1", tmp_path / "log")
    with cache.open("v1", fetcher) as pinned:
        (pinned.path / "images.cache").write_bytes(b"ultralytics")  # as Ultralytics leaves labels.cache
    with cache.open("v1", fetcher) as again:
        assert not again.filled
        assert (again.path / "images.cache").read_bytes() == b"ultralytics"
    assert fetcher.fills() == 1
    assert cache.total_bytes() == ENTRY_BYTES


def test_the_size_bound_holds_under_pressure_least_recently_used_first(tmp_path: Path) -> None:
    root, log = tmp_path / "cache", tmp_path / "log"
    cache = FolderCache(root, 2 * ENTRY_BYTES + ENTRY_BYTES // 2)  # room for two entries
    for key in ("a", "b"):
        fill_and_close(cache, key, log)
    with cache.open("a", Fetcher("a", log)) as hit:  # a is used again: b is now the least recent
        assert not hit.filled
    fill_and_close(cache, "c", log)
    assert entries(root) == ["a", "c"]
    assert cache.total_bytes() == 2 * ENTRY_BYTES <= cache.limit_bytes
    fill_and_close(cache, "d", log)
    assert entries(root) == ["c", "d"]
    assert cache.total_bytes() <= cache.limit_bytes
    assert list((root / ".tmp").iterdir()) == []


def test_the_oldest_entry_not_in_use_goes_first(tmp_path: Path) -> None:
    root, log = tmp_path / "cache", tmp_path / "log"
    cache = FolderCache(root, 2 * ENTRY_BYTES + ENTRY_BYTES // 2)
    with cache.open("a", Fetcher("a", log)) as in_use:
        fill_and_close(cache, "b", log)
        fill_and_close(cache, "c", log)
        assert entries(root) == ["a", "c"]  # a is older than b, but a job is using it
        assert contents(in_use.path) == expected("a")


def test_an_entry_in_use_is_never_evicted_even_over_the_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, log = tmp_path / "cache", tmp_path / "log"
    cache = FolderCache(root, ENTRY_BYTES // 2)  # not even room for one
    with (
        caplog.at_level(logging.WARNING, "operations.training"),
        cache.open("a", Fetcher("a", log)) as a,
        cache.open("b", Fetcher("b", log)) as b,
    ):
        assert entries(root) == ["a", "b"]
        assert cache.total_bytes() == 2 * ENTRY_BYTES
        assert contents(a.path) == expected("a") and contents(b.path) == expected("b")
    assert "over its limit" in caplog.text
    assert entries(root) == []  # no longer in use, they went as they were closed


def explode(folder: Path) -> None:
    (folder / "half.jpg").write_bytes(b"half")
    raise RuntimeError("storage went away")


def test_a_fill_that_fails_leaves_nothing_and_the_next_open_fills(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = FolderCache(root, 2**20)
    with pytest.raises(RuntimeError, match="storage went away"):
        cache.open("v1", explode)
    assert entries(root) == []
    assert list((root / ".tmp").iterdir()) == []
    with cache.open("v1", Fetcher("v1", tmp_path / "log")) as pinned:
        assert pinned.filled
        assert contents(pinned.path) == expected("v1")


def crash(folder: Path) -> None:
    (folder / "half.jpg").write_bytes(b"half")
    os._exit(3)  # the worker dies mid-fill: no cleanup of any kind runs


def open_and_crash(root: str) -> None:
    FolderCache(Path(root), 2**20).open("a", crash)


def test_a_fill_that_crashed_leaves_a_temp_folder_that_the_next_fill_removes(tmp_path: Path) -> None:
    root, log = tmp_path / "cache", tmp_path / "log"
    worker = multiprocessing.get_context("spawn").Process(target=open_and_crash, args=(str(root),))
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 3
    assert entries(root) == []
    assert len(list((root / ".tmp").iterdir())) == 1
    cache = FolderCache(root, 2**20)
    fill_and_close(cache, "b", log)  # a fill of another key cleans up too
    assert list((root / ".tmp").iterdir()) == []
    fill_and_close(cache, "a", log)
    assert entries(root) == ["a", "b"]


def test_fetched_content_that_does_not_match_its_sha256_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "cache"

    def wrong(folder: Path) -> dict[str, str]:
        return fetch_all(folder, [("a.jpg", "0" * 64)], lambda _rel, target: target.write_bytes(b"a"))

    with pytest.raises(CacheCorrupt, match=r"a\.jpg"):
        FolderCache(root, 2**20).open("v1", wrong)
    assert entries(root) == []


def test_a_repair_that_does_not_restore_a_file_is_refused(tmp_path: Path) -> None:
    cache, fetcher = FolderCache(tmp_path / "cache", 2**20), Fetcher("v1", tmp_path / "log")
    with cache.open("v1", fetcher) as pinned:
        (pinned.path / "images/2.jpg").unlink()
    with pytest.raises(CacheCorrupt, match=r"images/2\.jpg"):
        cache.open("v1", lambda _folder: None)
    with cache.open("v1", fetcher) as repaired:
        assert repaired.filled
        assert contents(repaired.path) == expected("v1")


@pytest.mark.parametrize(
    "key",
    [
        "",
        ".",
        "..",
        "a/b",
        "/a",
        "../a",
        ".hidden",
        "-a",
        "a" * 201,
        "x" * 300,
        "é",
        "\uff41",
        "a\n",
        "a\u202e",
    ],
)
def test_a_key_that_is_not_a_plain_name_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="cache key"):
        FolderCache(tmp_path / "cache", 2**20).open(key, Fetcher("v1", tmp_path / "log"))


def test_a_key_of_200_plain_characters_is_accepted(tmp_path: Path) -> None:
    key = "a" + "0._-" * 49 + "abc"
    assert len(key) == 200
    with FolderCache(tmp_path / "cache", 2**20).open(key, Fetcher(key, tmp_path / "log")) as pinned:
        assert pinned.path.parent.name == key


@pytest.mark.parametrize("rel", ["../escape.jpg", "/etc/passwd", "", "a/../../b"])
def test_fetch_all_refuses_a_path_outside_the_folder(tmp_path: Path, rel: str) -> None:
    with pytest.raises(ValueError, match="relative path"):
        fetch_all(tmp_path, [(rel, None)], lambda _rel, target: target.write_bytes(b"x"))


def test_the_dataset_cache_lives_in_the_data_dir_within_the_configured_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINYARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRAINYARD_CACHE_MAX_GB", "1.5")
    get_settings.cache_clear()
    get_dataset_cache.cache_clear()
    try:
        cache = get_dataset_cache()
        assert cache.root == (tmp_path / "data").resolve() / "cache" / "datasets"
        assert cache.limit_bytes == 3 * 2**29
        monkeypatch.setenv("TRAINYARD_CACHE_MAX_GB", "0")
        get_settings.cache_clear()
        with pytest.raises(ValidationError, match="TRAINYARD_CACHE_MAX_GB"):
            get_settings()
    finally:
        get_settings.cache_clear()
        get_dataset_cache.cache_clear()


def test_a_closed_pin_no_longer_keeps_its_entry(tmp_path: Path) -> None:
    root, log = tmp_path / "cache", tmp_path / "log"
    cache = FolderCache(root, ENTRY_BYTES)
    pinned: Pinned = cache.open("a", Fetcher("a", log))
    pinned.close()
    pinned.close()  # harmless
    fill_and_close(cache, "b", log)
    assert entries(root) == ["b"]
