"""What a worker reports of its disk (workers/disk.py): its caches' size, measured at most every 30 s,
and the free space of its data dir's file system, on real folders."""

import os
import shutil
from pathlib import Path

from workers.disk import DiskMeter, folder_bytes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def put(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_the_caches_are_the_files_under_both_cache_folders(tmp_path: Path) -> None:
    data = tmp_path / "data"
    put(data / "cache" / "datasets" / "v1" / "images" / "a.jpg", 1000)
    put(data / "cache" / "datasets" / "v1" / "labels" / "a.txt", 24)
    put(data / "weights-cache" / "abc.pt", 5000)
    put(data / "runs" / "job-1" / "attempt-1" / "last.pt", 7000)  # scratch space, not a cache
    put(tmp_path / "elsewhere" / "big.bin", 9000)
    os.symlink(tmp_path / "elsewhere", data / "cache" / "linked")  # not followed
    os.symlink(tmp_path / "elsewhere" / "big.bin", data / "weights-cache" / "link.pt")
    put(data / "cache" / "datasets" / "v2" / "images" / "b.jpg", 300)
    os.link(data / "cache" / "datasets" / "v2" / "images" / "b.jpg", data / "cache" / "datasets" / "v2.b.jpg")
    meter = DiskMeter(data)
    meter.walk_if_due()
    assert meter.report()["cache_bytes"] == 6324  # the hard-linked file takes its space once


def test_missing_folders_are_empty_caches(tmp_path: Path) -> None:
    assert folder_bytes(tmp_path / "nothing") == 0
    meter = DiskMeter(tmp_path / "not-made-yet" / "data")
    assert meter.report()["cache_bytes"] is None  # not measured yet
    meter.walk_if_due()
    report = meter.report()
    assert report["cache_bytes"] == 0
    # The disk of the nearest folder that exists: the data dir is made by the worker's first job.
    usage = shutil.disk_usage(tmp_path)
    assert report["disk_total_bytes"] == usage.total
    assert report["disk_free_bytes"] is not None and 0 < report["disk_free_bytes"] <= usage.total


def test_a_new_cached_file_counts_from_the_next_walk_at_most_30_s_later(tmp_path: Path) -> None:
    clock = Clock()
    meter = DiskMeter(tmp_path, clock=clock)
    put(tmp_path / "cache" / "datasets" / "one", 100)
    meter.walk_if_due()
    put(tmp_path / "weights-cache" / "two.pt", 50)
    clock.now += 29
    meter.walk_if_due()
    assert meter.report()["cache_bytes"] == 100  # the figure of the last walk
    clock.now += 1
    meter.walk_if_due()
    assert meter.report()["cache_bytes"] == 150
    shutil.rmtree(tmp_path / "cache")  # evicted
    clock.now += 30
    meter.walk_if_due()
    assert meter.report()["cache_bytes"] == 50
