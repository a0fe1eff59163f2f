"""S3Storage against a real S3-compatible HTTP server: the same keys and guarantees as local storage."""

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from app.core.storage import LocalStorage, MiB, S3Storage, UnsafeKey, get_storage
from tests.conftest import clear_caches

KEY = "projects/demo/model/training/run-1/weights/best.pt"


def test_round_trip_of_files_and_bytes(s3: S3Storage, payload: Path, tmp_path: Path) -> None:
    assert not s3.exists(KEY)
    assert s3.put_file(KEY, payload) == payload.stat().st_size
    assert s3.exists(KEY)
    assert s3.size(KEY) == payload.stat().st_size
    got = s3.get_file(KEY, tmp_path / "down" / "best.pt")
    assert got.read_bytes() == payload.read_bytes()

    assert s3.put_bytes("projects/demo/a/config.yaml", b"epochs: 3\n") == 10
    assert s3.get_file("projects/demo/a/config.yaml", tmp_path / "c.yaml").read_bytes() == b"epochs: 3\n"


def test_overwrite_replaces_the_whole_object_and_a_failed_upload_keeps_the_old(
    s3: S3Storage, tmp_path: Path
) -> None:
    s3.put_bytes(KEY, b"old" * 1000)
    s3.put_bytes(KEY, b"new")
    assert s3.get_file(KEY, tmp_path / "a").read_bytes() == b"new"

    with pytest.raises(FileNotFoundError):
        s3.put_file(KEY, tmp_path / "missing.pt")
    assert s3.get_file(KEY, tmp_path / "b").read_bytes() == b"new"


def test_failed_download_leaves_neither_target_nor_temp_file(s3: S3Storage, tmp_path: Path) -> None:
    target = tmp_path / "out" / "last.pt"
    with pytest.raises(ClientError):
        s3.get_file("projects/demo/nothing-here.pt", target)
    assert list(target.parent.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        s3.size("projects/demo/nothing-here.pt")


def test_presigned_url_downloads_with_plain_http_and_no_credentials(s3: S3Storage, payload: Path) -> None:
    s3.put_file(KEY, payload)
    url = s3.presigned_url(KEY, expires=60)
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    response = httpx.get(url)  # no AWS credentials, no SDK: what a browser or curl would do
    assert response.status_code == 200
    assert response.content == payload.read_bytes()


def test_large_file_goes_up_in_parts(s3_env: str, s3_endpoint: str, tmp_path: Path) -> None:
    storage = S3Storage(s3_env, s3_endpoint, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    big = tmp_path / "big.pt"
    big.write_bytes(os.urandom(11 * MiB))
    assert storage.put_file(KEY, big) == 11 * MiB
    # A multipart object's ETag is "<md5 of the part md5s>-<number of parts>".
    etag = storage.client.head_object(Bucket=s3_env, Key=KEY)["ETag"].strip('"')
    assert etag.endswith("-3")
    down = storage.get_file(KEY, tmp_path / "down.pt")
    assert hashlib.sha256(down.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


def test_small_file_goes_up_in_one_request(s3: S3Storage, payload: Path) -> None:
    s3.put_file(KEY, payload)
    etag = s3.client.head_object(Bucket=s3.bucket, Key=KEY)["ETag"].strip('"')
    assert "-" not in etag


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a/./b", "", "a\\b"])
def test_unsafe_keys_are_refused_before_any_request(s3: S3Storage, payload: Path, key: str) -> None:
    for call in (
        lambda: s3.put_file(key, payload),
        lambda: s3.put_bytes(key, b"x"),
        lambda: s3.exists(key),
        lambda: s3.get_file(key, payload.parent / "x"),
        lambda: s3.presigned_url(key),
    ):
        with pytest.raises(UnsafeKey):
            call()
    assert s3.client.list_objects_v2(Bucket=s3.bucket).get("KeyCount", 0) == 0


def test_the_setting_switches_the_backend(
    monkeypatch: pytest.MonkeyPatch, s3_env: str, s3_endpoint: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRAINYARD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TRAINYARD_STORAGE", raising=False)
    clear_caches()
    assert isinstance(get_storage(), LocalStorage)

    monkeypatch.setenv("TRAINYARD_STORAGE", "s3")
    monkeypatch.setenv("TRAINYARD_S3_BUCKET", s3_env)
    monkeypatch.setenv("TRAINYARD_S3_ENDPOINT_URL", s3_endpoint)
    clear_caches()
    try:
        storage = get_storage()
        assert isinstance(storage, S3Storage)
        storage.put_bytes("projects/demo/x.txt", b"via settings")
        assert S3Storage(s3_env, s3_endpoint).exists("projects/demo/x.txt")
    finally:
        clear_caches()
