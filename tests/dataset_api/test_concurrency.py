"""Version numbers under concurrency, on SQLite and PostgreSQL: threads with their own sessions."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.models import DatasetVersion
from app.versions import schemas, service
from tests.dataset_api.conftest import make_dataset

pytestmark = pytest.mark.integration

N = 20


def _race(db: Database, project_id: int, bodies: list[schemas.VersionCreate]) -> list[tuple[int, int, bool]]:
    barrier = threading.Barrier(len(bodies))

    def one(body: schemas.VersionCreate) -> tuple[int, int, bool]:
        barrier.wait()
        version, created = service.create_version(db, project_id, body)
        return version.id, version.number, created

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def test_twenty_simultaneous_versions_are_numbered_1_to_20(
    client: TestClient, db: Database, tmp_path: Path
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d", n=8)
    results = _race(db, project_id, [schemas.VersionCreate(display_name=f"r{i}") for i in range(N)])
    assert sorted(number for _, number, _ in results) == list(range(1, N + 1))
    assert all(created for _, _, created in results)
    with db.session() as session:
        rows = session.query(DatasetVersion).all()
        assert sorted(v.number for v in rows) == list(range(1, N + 1))
        assert {v.status for v in rows} == {"ready"}
        # Same data, same request (display names are not content): one manifest checksum for all.
        assert len({v.manifest_sha256 for v in rows}) == 1 and None not in {v.manifest_key for v in rows}


def test_twenty_simultaneous_requests_with_one_key_make_one_version(
    client: TestClient, db: Database, tmp_path: Path
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d", n=8)
    results = _race(db, project_id, [schemas.VersionCreate(idempotency_key="same") for _ in range(N)])
    assert len({version_id for version_id, _, _ in results}) == 1
    assert {number for _, number, _ in results} == {1}
    assert sum(created for _, _, created in results) == 1
    with db.session() as session:
        assert session.query(DatasetVersion).count() == 1
    # The key is per project: the next request without it gets number 2.
    assert service.create_version(db, project_id, schemas.VersionCreate())[0].number == 2
