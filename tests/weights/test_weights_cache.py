"""A worker's weights cache against a real S3 server (moto): workers with separate disks share base
weights through storage, a second use on one worker does not fetch again, content is checked, and the
cache stays within its bound by evicting the least recently used file."""

import hashlib
import os
import time
from pathlib import Path

import pytest

from app.core.storage import S3Storage
from tests.storage.conftest import s3, s3_endpoint, s3_env  # noqa: F401  (the S3 fixtures)
from workers.weights_cache import WeightsCache, WeightsMismatch

pytestmark = pytest.mark.integration
KB = 1024


def put(storage: S3Storage, tmp_path: Path, name: str, size: int = 64 * KB) -> tuple[str, str, bytes]:
    data = os.urandom(size)
    sha256 = hashlib.sha256(data).hexdigest()
    key = f"weights/base/{sha256}.pt"
    (tmp_path / name).write_bytes(data)
    storage.put_file(key, tmp_path / name)
    return key, sha256, data


def test_two_workers_share_weights_through_s3_and_fetch_once_each(s3: S3Storage, tmp_path: Path) -> None:  # noqa: F811
    key, sha256, data = put(s3, tmp_path, "yolo.pt")
    first, second = WeightsCache(tmp_path / "w1", 10 * 2**20), WeightsCache(tmp_path / "w2", 10 * 2**20)
    assert first.fetch(s3, key, sha256).read_bytes() == data
    assert second.fetch(s3, key, sha256).read_bytes() == data
    s3.delete(key)  # a fetch now would fail: the cache answers from disk
    assert first.fetch(s3, key, sha256).read_bytes() == data


def test_content_that_does_not_match_its_sha256_is_refused_and_not_kept(
    s3: S3Storage,  # noqa: F811
    tmp_path: Path,
) -> None:
    key, _sha256, _data = put(s3, tmp_path, "yolo.pt")
    cache = WeightsCache(tmp_path / "cache", 10 * 2**20)
    with pytest.raises(WeightsMismatch):
        cache.fetch(s3, key, "0" * 64)
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_least_recently_used_file_goes_when_the_cache_is_full(s3: S3Storage, tmp_path: Path) -> None:  # noqa: F811
    cache = WeightsCache(tmp_path / "cache", 150 * KB)  # room for two 64 KB files
    a, b, c = (put(s3, tmp_path, name) for name in ("a.pt", "b.pt", "c.pt"))
    cache.fetch(s3, a[0], a[1])
    time.sleep(0.02)
    cache.fetch(s3, b[0], b[1])
    time.sleep(0.02)
    cache.fetch(s3, a[0], a[1])  # a is used again: b is now the least recently used
    time.sleep(0.02)
    cache.fetch(s3, c[0], c[1])
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.pt")) == sorted(f"{x[1]}.pt" for x in (a, c))
