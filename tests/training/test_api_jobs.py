"""Job submission and queries through the real app, on both databases, with the real Redis broker."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.db import Database
from app.models import JobEvent, TrainingJob

pytestmark = pytest.mark.integration


def job_body(dataset: Path, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "run 1",
        "project": "demo",
        "framework": "ultralytics",
        "task_type": "detection",
        "model_name": "yolo11n",
        "dataset_path": str(dataset),
        "config": {"epochs": 2, "imgsz": 64, "batch": 4},
    }
    body.update(overrides)
    return body


def queued_commands(redis_client: redis.Redis) -> list[list[Any]]:
    """The args of every train command waiting in the broker's `training` queue."""
    messages = [json.loads(raw) for raw in redis_client.lrange("training", 0, -1)]
    return [json.loads(base64.b64decode(m["body"]))[0] for m in messages]


def test_submit_stores_the_job_and_queues_one_command(
    client: TestClient, db: Database, yolo_dataset: Path, redis_client: redis.Redis
) -> None:
    response = client.post("/api/v1/training/jobs", json=job_body(yolo_dataset))
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued" and job["attempt"] == 1 and job["project"] == "demo"
    # The config snapshot is the resolved config: overrides on top of the task's base config.
    assert job["config"]["epochs"] == 2 and job["config"]["imgsz"] == 64
    assert job["config"]["optimizer"] == "auto"
    assert job["total_epochs"] == 2
    assert queued_commands(redis_client) == [[job["id"], 1]]
    with db.session() as s:
        events = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job["id"])))
    assert [(e.seq, e.type, e.data["status"]) for e in events] == [(1, "status", "queued")]
    assert client.get(f"/api/v1/training/jobs/{job['id']}").json()["name"] == "run 1"


def _counts(db: Database) -> tuple[int, int]:
    with db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(TrainingJob)) or 0,
            s.scalar(select(func.count()).select_from(JobEvent)) or 0,
        )


@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        ({"framework": "tensorflow"}, 422, "framework"),
        ({"task_type": "tracking"}, 422, "task_type"),
        ({"model_name": "resnet50"}, 422, "model_name"),
        ({"config": {"epochs": -1}}, 422, "config.epochs"),
        ({"config": {"imgsz": 100}}, 422, "config.imgsz"),
        ({"config": {"epochz": 3}}, 422, "config.epochz"),
        ({"name": "../../etc"}, 422, "name"),
        ({"project": ""}, 422, "project"),
        ({"dataset_path": "/definitely/not/here"}, 422, "dataset_path"),
        ({"dataset_path": "../../outside"}, 422, "dataset_path"),
        ({"dataset_path": None}, 422, "dataset_path"),
        ({"unknown": 1}, 422, "unknown"),
    ],
)
def test_bad_input_is_a_problem_naming_the_field_and_writes_nothing(
    client: TestClient,
    db: Database,
    yolo_dataset: Path,
    redis_client: redis.Redis,
    overrides: dict[str, Any],
    status: int,
    field: str,
) -> None:
    response = client.post("/api/v1/training/jobs", json=job_body(yolo_dataset, **overrides))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert {"type", "title", "status", "detail", "instance", "code", "request_id"} <= set(problem)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert _counts(db) == (0, 0)
    assert queued_commands(redis_client) == []


@pytest.mark.parametrize("content", ["names: [a\n  - b", "just a string", "train: images/train\nnames: {}\n"])
def test_malformed_data_yaml_is_refused(
    client: TestClient, db: Database, tmp_path: Path, content: str
) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "data.yaml").write_text(content)
    response = client.post("/api/v1/training/jobs", json=job_body(tmp_path / "bad"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "dataset_path"
    assert "data.yaml" in response.json()["errors"][0]["reason"]
    assert _counts(db) == (0, 0)


def test_a_name_used_in_the_project_is_a_conflict(
    client: TestClient, db: Database, yolo_dataset: Path
) -> None:
    assert client.post("/api/v1/training/jobs", json=job_body(yolo_dataset)).status_code == 201
    again = client.post("/api/v1/training/jobs", json=job_body(yolo_dataset, name="Run-1"))
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "name"
    # The same name in another project is fine.
    other = client.post("/api/v1/training/jobs", json=job_body(yolo_dataset, project="other"))
    assert other.status_code == 201
    assert _counts(db)[0] == 2


def test_relative_dataset_paths_resolve_inside_storage(
    client: TestClient, env: Path, yolo_dataset: Path
) -> None:
    import shutil

    shutil.copytree(yolo_dataset, env / "data" / "storage" / "datasets" / "shapes")
    response = client.post(
        "/api/v1/training/jobs", json=job_body(yolo_dataset, dataset_path="datasets/shapes")
    )
    assert response.status_code == 201, response.text
    # Recorded as the storage key it is, which a worker on any host resolves through its own storage.
    assert response.json()["dataset_path"] == "datasets/shapes"
    absolute = client.post(
        "/api/v1/training/jobs",
        json=job_body(
            yolo_dataset, name="absolute", dataset_path=str(env / "data" / "storage" / "datasets" / "shapes")
        ),
    )
    assert absolute.status_code == 201, absolute.text
    assert absolute.json()["dataset_path"] == "datasets/shapes"


def test_list_filters_and_paginates(client: TestClient, yolo_dataset: Path) -> None:
    for i in range(3):
        assert (
            client.post("/api/v1/training/jobs", json=job_body(yolo_dataset, name=f"a{i}")).status_code == 201
        )
    assert (
        client.post("/api/v1/training/jobs", json=job_body(yolo_dataset, name="b", project="p2")).status_code
        == 201
    )
    page = client.get("/api/v1/training/jobs", params={"project": "demo", "limit": 2}).json()
    assert page["total"] == 3 and [j["name"] for j in page["items"]] == ["a2", "a1"]
    page2 = client.get("/api/v1/training/jobs", params={"project": "demo", "limit": 2, "offset": 2}).json()
    assert [j["name"] for j in page2["items"]] == ["a0"]
    assert client.get("/api/v1/training/jobs", params={"status": "running"}).json()["total"] == 0
    bad = client.get("/api/v1/training/jobs", params={"status": "dancing"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"


def test_unknown_job_is_404_problem(client: TestClient) -> None:
    for path in ("", "/events", "/logs", "/metrics", "/checkpoints"):  # /events: 404 before streaming
        response = client.get(f"/api/v1/training/jobs/999{path}")
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"


def test_health_reports_database_redis_and_workers(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert body["workers"] == {"ok": False, "count": 0, "workers": []}


def test_a_queued_job_says_how_many_jobs_wait_ahead_of_it(client: TestClient, yolo_dataset: Path) -> None:
    ids = [
        client.post("/api/v1/training/jobs", json=job_body(yolo_dataset, name=f"run {i}")).json()["id"]
        for i in range(3)
    ]
    positions = [client.get(f"/api/v1/training/jobs/{i}").json()["queue_position"] for i in ids]
    assert positions == [0, 1, 2]
    assert client.post(f"/api/v1/training/jobs/{ids[0]}/cancel").status_code == 200
    assert client.get(f"/api/v1/training/jobs/{ids[0]}").json()["queue_position"] is None
    assert client.get(f"/api/v1/training/jobs/{ids[2]}").json()["queue_position"] == 1
    listed = client.get("/api/v1/training/jobs", params={"limit": 2}).json()["items"]
    assert [(j["id"], j["queue_position"]) for j in listed] == [(ids[2], 1), (ids[1], 0)]
    everything = client.get("/api/v1/training/jobs").json()["items"]
    assert [j["queue_position"] for j in everything] == [1, 0, None]
