"""A real S3-compatible HTTP server (moto's server mode) for the storage tests, one per session."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core.storage import S3Storage
from tests.support.stack import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "trainyard-test",
    "AWS_SECRET_ACCESS_KEY": "trainyard-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> str:
    """AWS credentials in the environment (as boto3 reads them in production) and a fresh bucket."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"trainyard-{uuid.uuid4().hex[:12]}"
    S3Storage(bucket, s3_endpoint).client.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3(s3_env: str, s3_endpoint: str) -> S3Storage:
    return S3Storage(s3_env, s3_endpoint)


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "best.pt"
    path.write_bytes(os.urandom(64 * 1024))
    return path
