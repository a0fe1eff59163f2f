"""Scheduling through the real app: a job's priority and pool at submission, its place in line in the job
record, and a project's GPU quota and share weight (admin keys), on both databases."""

from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.settings import get_settings
from app.core.workers import announce
from app.models import TrainingJob
from tests.conftest import bearer_headers, make_api_key
from tests.training.test_api_jobs import job_body

pytestmark = pytest.mark.integration
JOBS = "/api/v1/training/jobs"


def problem_fields(response_json: dict[str, object]) -> dict[str, str]:
    errors = response_json.get("errors")
    assert isinstance(errors, list), response_json
    return {e["field"]: e["reason"] for e in errors}


def job_count(db: Database) -> int:
    with db.session() as s:
        return s.query(TrainingJob).count()


def test_urgent_is_an_admin_keys_priority(client: TestClient, db: Database, yolo_dataset: Path) -> None:
    member = bearer_headers(make_api_key(db, "member", ["demo"]))
    refused = client.post(JOBS, json=job_body(yolo_dataset, priority="urgent"), headers=member)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert problem_fields(refused.json()) == {"priority": "member keys may ask for high at most"}
    assert job_count(db) == 0

    high = client.post(JOBS, json=job_body(yolo_dataset, name="high", priority="high"), headers=member)
    assert high.status_code == 201, high.text
    assert high.json()["priority"] == "high"
    urgent = client.post(JOBS, json=job_body(yolo_dataset, name="urgent", priority="urgent"))
    assert urgent.status_code == 201, urgent.text
    assert urgent.json()["priority"] == "urgent"
    assert client.post(JOBS, json=job_body(yolo_dataset, name="plain")).json()["priority"] == "normal"


def test_an_unknown_priority_is_refused(client: TestClient, db: Database, yolo_dataset: Path) -> None:
    response = client.post(JOBS, json=job_body(yolo_dataset, priority="asap"))
    assert response.status_code == 422
    assert "priority" in problem_fields(response.json())
    assert job_count(db) == 0


def test_a_pool_no_worker_serves_is_refused_naming_the_pools_there_are(
    client: TestClient, db: Database, yolo_dataset: Path, redis_client: redis.Redis
) -> None:
    announce(redis_client, "gpu-host-0", {"id": "gpu-host-0", "pool": "t4", "queues": ["training"]})
    response = client.post(JOBS, json=job_body(yolo_dataset, pool="a100"))
    assert response.status_code == 422, response.text
    assert problem_fields(response.json()) == {
        "pool": "no worker serves pool 'a100' and none is declared (pools: t4)"
    }
    assert job_count(db) == 0
    # A pool its worker announced is fine; so is a malformed name refused, by its form.
    assert client.post(JOBS, json=job_body(yolo_dataset, pool="t4")).status_code == 201
    assert "pool" in problem_fields(client.post(JOBS, json=job_body(yolo_dataset, pool="../a")).json())


def test_a_pool_declared_before_its_workers_come_up_is_accepted_and_announced_on_its_queue(
    client: TestClient, yolo_dataset: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINYARD_POOLS", "a100, h100")
    get_settings.cache_clear()
    response = client.post(JOBS, json=job_body(yolo_dataset, pool="h100"))
    assert response.status_code == 201, response.text
    assert response.json()["pool"] == "h100"
    # Only workers of that pool consume its queue (app/core/tasks.py `training_queue`).
    assert redis_client.llen("training.h100") == 1 and redis_client.llen("training") == 0


def test_a_queued_job_shows_its_place_and_why_it_waits(
    client: TestClient, yolo_dataset: Path, redis_client: redis.Redis
) -> None:
    first = client.post(JOBS, json=job_body(yolo_dataset, name="first")).json()
    client.post(JOBS, json=job_body(yolo_dataset, name="second", priority="high"))
    read = client.get(f"{JOBS}/{first['id']}").json()
    assert read["queue_position"] == 1  # the high-priority job goes first
    assert read["waiting"] == {
        "position": 2,
        "kind": "pool_unserved",
        "reason": "no live worker consumes the training queue",
        "estimated_start_seconds": None,
    }
    announce(redis_client, "gpu-host-0", {"id": "gpu-host-0", "pool": "t4", "queues": ["training"]})
    reads = {job["name"]: job for job in client.get(JOBS).json()["items"]}
    assert reads["second"]["waiting"]["reason"] == "starting: a GPU is free"
    assert reads["first"]["waiting"]["reason"] == "behind 1 job(s) of higher priority"
    assert (reads["second"]["waiting"]["kind"], reads["first"]["waiting"]["kind"]) == ("starting", "priority")


@pytest.mark.parametrize("all_projects", [False, True])
def test_only_admin_keys_set_a_projects_gpu_quota_and_share_weight(
    client: TestClient, db: Database, all_projects: bool
) -> None:
    admin_read = client.post("/api/v1/projects", json={"name": "demo"})
    project = admin_read.json() if admin_read.status_code == 201 else None
    assert project is not None, admin_read.text
    assert (project["gpu_quota"], project["share_weight"], project["running_jobs"]) == (None, 1.0, 0)
    scope = [] if all_projects else ["demo"]
    member = bearer_headers(make_api_key(db, "member", scope, all_projects=all_projects))
    url = f"/api/v1/projects/{project['id']}"

    for body in ({"gpu_quota": 8}, {"share_weight": 5}):
        refused = client.patch(url, json=body, headers=member)
        assert refused.status_code == 403, refused.text
    assert client.patch(url, json={"description": "ours"}, headers=member).status_code == 200

    changed = client.patch(url, json={"gpu_quota": 2, "share_weight": 3})
    assert changed.status_code == 200, changed.text
    shown = client.get(url).json()
    assert (shown["gpu_quota"], shown["share_weight"], shown["description"]) == (2, 3.0, "ours")
    # null lifts the quota; a weight stays unless given.
    lifted = client.patch(url, json={"gpu_quota": None}).json()
    assert (lifted["gpu_quota"], lifted["share_weight"]) == (None, 3.0)


@pytest.mark.parametrize(
    ("body", "field"), [({"gpu_quota": -1}, "gpu_quota"), ({"share_weight": 0}, "share_weight")]
)
def test_a_bad_quota_or_weight_is_refused_naming_it(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    project = client.post("/api/v1/projects", json={"name": "demo"}).json()
    response = client.patch(f"/api/v1/projects/{project['id']}", json=body)
    assert response.status_code == 422
    assert field in problem_fields(response.json())
