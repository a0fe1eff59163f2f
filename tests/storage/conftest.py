"""A real S3-compatible HTTP server (moto's server mode) for the storage tests, one per session."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.storage import S3Storage
from tests.support.s3 import CREDENTIALS, moto_server


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


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
