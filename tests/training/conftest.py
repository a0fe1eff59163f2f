from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.main import create_app
from tests.factories import make_yolo_dataset


@pytest.fixture
def client(db: Database, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    """The API with an admin key on every request (tests/auth covers the other keys)."""
    with TestClient(create_app(db), headers=admin_headers) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def yolo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("datasets") / "shapes", train=8, val=2, size=64)
