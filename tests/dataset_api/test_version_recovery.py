"""The reconciler hands back dataset versions left `training` with no unfinished job on them."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.models import DatasetVersion
from app.training import reconcile
from tests.dataset_api.conftest import make_dataset

pytestmark = pytest.mark.integration


def test_a_version_stuck_in_training_is_released(client: TestClient, db: Database, tmp_path: Path) -> None:
    project_id, _dataset_id = make_dataset(client, tmp_path)
    response = client.post(f"/api/v1/projects/{project_id}/versions", json={})
    assert response.status_code == 201, response.text
    version_id = response.json()["id"]
    with db.session() as s:
        version = s.get(DatasetVersion, version_id)
        assert version is not None and version.status == "ready"
        version.status = "training"  # its job ended, but the release never happened
    with db.session() as s:
        assert reconcile.release_idle_versions(s) == [version_id]
    with db.session() as s:
        assert s.get_one(DatasetVersion, version_id).status == "ready"
        assert reconcile.release_idle_versions(s) == []
