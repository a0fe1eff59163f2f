"""What a key sees and may do: lists show only its projects, jobs go only to its projects, projects are
made by admins (or all-projects keys), fleet metrics need an all-projects key."""

from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.workers import announce
from tests.auth.conftest import World, assert_problem, snapshot

pytestmark = pytest.mark.integration


def job_body(project: str, dataset: Path, name: str = "run") -> dict[str, Any]:
    return {"name": name, "project": project, "dataset_path": str(dataset), "config": {"epochs": 1}}


def test_lists_show_only_the_keys_projects(api: TestClient, world: World) -> None:
    beta = world.headers("member_beta")
    jobs = api.get("/api/v1/training/jobs", headers=beta).json()
    assert [j["id"] for j in jobs["items"]] == [world.beta_job] and jobs["total"] == 1
    projects = api.get("/api/v1/projects", headers=beta).json()
    assert [p["name"] for p in projects["items"]] == ["beta"] and projects["total"] == 1
    assert api.get("/api/v1/datasets", headers=beta).json() == {"datasets": [], "total": 0}
    # Asking for another project by name finds nothing rather than an error.
    assert api.get("/api/v1/training/jobs", params={"project": "alpha"}, headers=beta).json()["total"] == 0
    admin = api.get("/api/v1/training/jobs", headers=world.headers("admin")).json()
    assert admin["total"] == 2
    everything = api.get("/api/v1/projects", headers=world.headers("viewer_all")).json()
    assert everything["total"] == 2


def test_a_member_submits_only_to_its_projects(
    api: TestClient, db: Database, world: World, yolo_dataset: Path
) -> None:
    beta = world.headers("member_beta")
    before = snapshot(db)
    for project in ("alpha", "brand-new"):
        response = api.post("/api/v1/training/jobs", json=job_body(project, yolo_dataset), headers=beta)
        assert_problem(response, 404)
    preflight = api.post("/api/v1/training/preflight", json=job_body("alpha", yolo_dataset), headers=beta)
    assert_problem(preflight, 404)
    assert snapshot(db) == before
    created = api.post("/api/v1/training/jobs", json=job_body("beta", yolo_dataset), headers=beta)
    assert created.status_code == 201, created.text
    assert created.json()["project"] == "beta"


def test_a_scoped_key_cannot_train_on_another_projects_files(
    api: TestClient, db: Database, world: World, tmp_path: Path
) -> None:
    from app.core.settings import get_settings
    from tests.factories import make_yolo_dataset

    inside_alpha = get_settings().resolved_storage_root / "projects" / "alpha" / "training_data" / "shapes"
    make_yolo_dataset(inside_alpha, train=1, val=1, size=32)
    before = snapshot(db)
    for path in (str(inside_alpha), "projects/alpha/training_data/shapes"):
        body = job_body("beta", Path(path))
        body["dataset_path"] = path
        assert_problem(
            api.post("/api/v1/training/jobs", json=body, headers=world.headers("member_beta")), 404
        )
    folder = {"project_id": world.beta, "name": "stolen", "source_path": "projects/alpha/datasets"}
    response = api.post("/api/v1/datasets/from-folder", json=folder, headers=world.headers("member_beta"))
    assert_problem(response, 404)
    assert snapshot(db) == before
    mine = job_body("alpha", inside_alpha)
    assert (
        api.post("/api/v1/training/jobs", json=mine, headers=world.headers("member_alpha")).status_code == 201
    )


def test_another_projects_release_does_not_exist(api: TestClient, db: Database, world: World) -> None:
    before = snapshot(db)
    beta = world.headers("member_beta")
    assert_problem(
        api.get("/api/v1/training/check-extracted", params={"zip_path": world.release}, headers=beta), 404
    )
    assert_problem(
        api.post("/api/v1/training/extract-release", json={"zip_path": world.release}, headers=beta), 404
    )
    assert_problem(
        api.delete("/api/v1/training/releases", params={"zip_path": world.release}, headers=beta), 404
    )
    assert snapshot(db) == before
    mine = api.get(
        "/api/v1/training/check-extracted",
        params={"zip_path": world.release},
        headers=world.headers("member_alpha"),
    )
    assert mine.status_code == 200 and mine.json()["extracted"] is False


def test_only_all_project_keys_create_or_delete_projects(api: TestClient, db: Database, world: World) -> None:
    before = snapshot(db)
    refused = api.post("/api/v1/projects", json={"name": "gamma"}, headers=world.headers("member_alpha"))
    assert assert_problem(refused, 403)["code"] == "FORBIDDEN"
    assert_problem(api.delete(f"/api/v1/projects/{world.alpha}", headers=world.headers("member_alpha")), 403)
    assert_problem(api.delete(f"/api/v1/projects/{world.alpha}", headers=world.headers("member_beta")), 404)
    assert snapshot(db) == before
    # A member may still rename its own project.
    renamed = api.patch(
        f"/api/v1/projects/{world.alpha}", json={"description": "ours"}, headers=world.headers("member_alpha")
    )
    assert renamed.status_code == 200
    created = api.post("/api/v1/projects", json={"name": "gamma"}, headers=world.headers("admin"))
    assert created.status_code == 201


def test_metrics_need_a_key_for_every_project(api: TestClient, world: World) -> None:
    assert_problem(api.get("/metrics"), 401)
    assert_problem(api.get("/metrics", headers=world.headers("member_alpha")), 403)
    for who in ("admin", "viewer_all"):
        response = api.get("/metrics", headers=world.headers(who))
        assert response.status_code == 200 and "trainyard_jobs" in response.text


def test_a_key_records_when_it_was_last_used(api: TestClient, db: Database, world: World) -> None:
    from sqlalchemy import select

    from app.models import ApiKey

    with db.session() as s:
        prefix = world.keys["member_beta"].split("_")[1]
        assert s.scalar(select(ApiKey.last_used_at).where(ApiKey.prefix == prefix)) is None
    api.get("/api/v1/projects", headers=world.headers("member_beta"))
    with db.session() as s:
        key = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        assert key is not None and key.last_used_at is not None
        # Only the hash is stored.
        assert world.keys["member_beta"] not in (key.key_hash, key.prefix, key.name)


def test_a_worker_shows_its_current_job_only_to_keys_that_see_the_job(
    api: TestClient, world: World, redis_client: redis.Redis
) -> None:
    announce(redis_client, "box-gpu0", {"id": "box-gpu0", "device": "0", "current_job": world.alpha_job})
    seen = {
        who: api.get("/api/v1/workers/box-gpu0", headers=world.headers(who)).json()["current_job"]
        for who in ("admin", "member_beta", "viewer_all")
    }
    assert seen == {"admin": world.alpha_job, "member_beta": None, "viewer_all": world.alpha_job}
    (listed,) = api.get("/api/v1/workers", headers=world.headers("member_beta")).json()["items"]
    assert listed["id"] == "box-gpu0" and listed["current_job"] is None
