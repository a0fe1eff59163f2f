"""Projects API on SQLite and PostgreSQL."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.jobs import JobStatus
from app.models import Dataset, Project, TrainingJob
from tests.dataset_api.conftest import assert_problem, make_project, upload_dataset
from tests.factories import make_job

pytestmark = pytest.mark.integration


def test_create_list_get_update(client: TestClient) -> None:
    created = make_project(client, "Weed Survey")
    assert created["slug"] == "weed-survey" and created["storage_prefix"] == "projects/weed-survey"
    assert created["datasets"] == created["versions"] == created["jobs"] == 0
    make_project(client, "Other")

    page = client.get("/api/v1/projects", params={"search": "weed"}).json()
    assert page["total"] == 1 and page["items"][0]["id"] == created["id"]
    assert client.get("/api/v1/projects").json()["total"] == 2

    updated = client.patch(
        f"/api/v1/projects/{created['id']}", json={"name": "Weeds 2025", "description": "x"}
    )
    assert updated.status_code == 200
    # A rename keeps the slug: storage paths never move.
    assert updated.json()["name"] == "Weeds 2025" and updated.json()["slug"] == "weed-survey"
    assert client.get(f"/api/v1/projects/{created['id']}").json()["description"] == "x"


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", "", " lead", "x" * 101, "a..b"])
def test_unsafe_names_are_refused(client: TestClient, name: str, db: Database) -> None:
    assert_problem(client.post("/api/v1/projects", json={"name": name}), 422, "name")
    with db.session() as session:
        assert session.query(Project).count() == 0


def test_duplicates_and_missing(client: TestClient) -> None:
    first = make_project(client, "Demo")
    assert_problem(client.post("/api/v1/projects", json={"name": "Demo"}), 409, "exists")
    assert_problem(client.post("/api/v1/projects", json={"name": "demo"}), 409)  # same slug
    other = make_project(client, "Other")
    assert_problem(client.patch(f"/api/v1/projects/{other['id']}", json={"name": "Demo"}), 409)
    assert_problem(client.get("/api/v1/projects/999999"), 404)
    assert client.get(f"/api/v1/projects/{first['id']}").json()["name"] == "Demo"


def test_delete_is_refused_while_a_job_is_unfinished_then_cascades(
    client: TestClient, db: Database, storage: Path, dice_zip: bytes
) -> None:
    project = make_project(client, "demo")
    assert upload_dataset(client, project["id"], dice_zip).status_code == 201
    with db.session() as session:
        job = make_job(session, project="demo")
        job_id = job.id
    assert (storage / "projects/demo/datasets/synthetic/source/metadata.json").is_file()

    assert_problem(client.delete(f"/api/v1/projects/{project['id']}"), 409, "unfinished")
    assert (storage / "projects/demo").is_dir()

    with db.session() as session:
        session.get_one(TrainingJob, job_id).status = JobStatus.COMPLETED
    assert client.delete(f"/api/v1/projects/{project['id']}").status_code == 204
    assert not (storage / "projects/demo").exists()
    with db.session() as session:
        assert session.query(Project).count() == 0
        assert session.query(Dataset).count() == 0
        assert session.query(TrainingJob).count() == 0
    assert_problem(client.delete(f"/api/v1/projects/{project['id']}"), 404)
