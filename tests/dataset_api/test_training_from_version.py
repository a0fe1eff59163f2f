"""POST /training/jobs with dataset_version_id: linkage, version status, and the worker's conversion."""

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.settings import get_settings
from app.core.storage import LocalStorage
from app.models import DatasetVersion, TrainingJob
from app.training import state
from tests.dataset_api.conftest import assert_problem, make_dataset, make_project
from workers.datasets import VersionUnavailable, materialize_version

pytestmark = pytest.mark.integration


def job_body(
    version_id: int, name: str = "from version", project: str = "demo", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "project": project,
        "task_type": "detection",
        "model_name": "yolo11n",
        "dataset_version_id": version_id,
        "config": {"epochs": 1, "imgsz": 64},
        **extra,
    }


@pytest.fixture
def version(client: TestClient, tmp_path: Path) -> dict[str, Any]:
    project_id, _ = make_dataset(client, tmp_path / "d")
    response = client.post(f"/api/v1/projects/{project_id}/versions", json={})
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def version_status(client: TestClient, version: dict[str, Any]) -> str:
    url = f"/api/v1/projects/{version['project_id']}/versions/{version['id']}"
    status: str = client.get(url).json()["status"]
    return status


def test_job_records_the_version_and_the_version_is_training_until_every_job_ends(
    client: TestClient, db: Database, version: dict[str, Any]
) -> None:
    first = client.post("/api/v1/training/jobs", json=job_body(version["id"]))
    assert first.status_code == 201, first.text
    job = first.json()
    assert job["dataset_version_id"] == version["id"]
    assert job["dataset_manifest_sha256"] == version["manifest_sha256"]
    assert job["dataset_path"].endswith(f"versions/v1/yolo/detection-{version['manifest_sha256']}-c1")
    assert version_status(client, version) == "training"
    second = client.post("/api/v1/training/jobs", json=job_body(version["id"], name="second")).json()

    detail = client.get(f"/api/v1/projects/{version['project_id']}/versions/{version['id']}").json()
    assert [j["id"] for j in detail["jobs"]] == [second["id"], job["id"]]
    assert_problem(client.delete(f"/api/v1/projects/{version['project_id']}/versions/{version['id']}"), 409)

    with db.session() as session:
        state.cancel_job(session, job["id"])
    assert version_status(client, version) == "training"  # the second job still uses it
    with db.session() as session:
        state.cancel_job(session, second["id"])
    assert version_status(client, version) == "ready"


def test_refusals(client: TestClient, db: Database, version: dict[str, Any], tmp_path: Path) -> None:
    vid = version["id"]
    assert_problem(client.post("/api/v1/training/jobs", json=job_body(424242)), 404)
    assert_problem(
        client.post("/api/v1/training/jobs", json=job_body(vid, dataset_path=str(tmp_path))), 422, "not both"
    )
    make_project(client, "elsewhere")
    assert_problem(
        client.post("/api/v1/training/jobs", json=job_body(vid, project="elsewhere")), 422, "belongs"
    )
    assert_problem(
        client.post("/api/v1/training/jobs", json=job_body(vid, task_type="pose")),
        422,
        "no pose annotations",
    )
    archived = client.delete(f"/api/v1/projects/{version['project_id']}/versions/{vid}")
    assert archived.status_code == 200
    assert_problem(client.post("/api/v1/training/jobs", json=job_body(vid)), 409, "archived")
    with db.session() as session:
        assert session.query(TrainingJob).count() == 0
        assert session.get_one(DatasetVersion, vid).status == "archived"


def test_worker_materializes_the_version_once(
    client: TestClient, db: Database, version: dict[str, Any]
) -> None:
    root = get_settings().resolved_storage_root
    folder = materialize_version(db, version["id"], "detection", LocalStorage(root)).path
    data = yaml.safe_load((folder / "data.yaml").read_text())
    assert data["names"] == {0: "cat", 1: "dog"}
    labels = sorted((folder / "labels").rglob("*.txt"))
    assert len(labels) == 20 and len(list((folder / "images" / "val").iterdir())) == 5
    job = client.post("/api/v1/training/jobs", json=job_body(version["id"])).json()
    assert root / job["dataset_path"] == folder  # a storage key: every host resolves it
    # A second materialization is a cache hit: nothing is rewritten.
    marker = folder / ".trainyard-convert.json"
    mtime = marker.stat().st_mtime_ns
    assert materialize_version(db, version["id"], "detection", LocalStorage(root)).path == folder
    assert marker.stat().st_mtime_ns == mtime


def test_worker_refuses_a_manifest_changed_after_freezing(
    client: TestClient, db: Database, version: dict[str, Any]
) -> None:
    root = get_settings().resolved_storage_root
    manifest = root / version["manifest_path"]
    manifest.write_bytes(manifest.read_bytes().replace(b'"cat"', b'"cow"'))
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() != version["manifest_sha256"]
    with pytest.raises(VersionUnavailable, match="changed after freezing"):
        materialize_version(db, version["id"], "detection", LocalStorage(root))
