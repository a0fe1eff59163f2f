"""A new job may start from a registered model or from another job's best weights."""

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.models import Project, RegisteredModel, TrainingJob
from tests.training.test_api_jobs import job_body

pytestmark = pytest.mark.integration

BEST = "projects/demo/model/training/base/weights/best.pt"


def finished_job(client: TestClient, db: Database, dataset: Path, **fields: Any) -> int:
    job = client.post("/api/v1/training/jobs", json=job_body(dataset, name="base")).json()
    with db.session() as s:
        row = s.get_one(TrainingJob, job["id"])
        row.status = "completed"
        for key, value in {"best_checkpoint": BEST, **fields}.items():
            setattr(row, key, value)
    return int(job["id"])


def test_from_another_jobs_best_weights(client: TestClient, db: Database, yolo_dataset: Path) -> None:
    parent = finished_job(client, db, yolo_dataset)
    response = client.post(
        "/api/v1/training/jobs", json=job_body(yolo_dataset, name="tuned", checkpoint_job_id=parent)
    )
    assert response.status_code == 201, response.text
    assert response.json()["parent_job_id"] == parent
    with db.session() as s:
        child = s.get_one(TrainingJob, response.json()["id"])
        assert (child.checkpoint_path, child.checkpoint_model_id) == (BEST, None)


def test_from_a_registered_model(client: TestClient, db: Database, yolo_dataset: Path) -> None:
    parent = finished_job(client, db, yolo_dataset)
    with db.session() as s:
        project = s.query(Project).filter_by(name="demo").one()
        model = RegisteredModel(
            project_id=project.id,
            job_id=parent,
            name="base",
            framework="ultralytics",
            task_type="detection",
            architecture="yolo11n",
            weights_key=BEST,
            job_status="completed",
        )
        s.add(model)
        s.flush()
        model_id = model.id
    response = client.post(
        "/api/v1/training/jobs", json=job_body(yolo_dataset, name="tuned", checkpoint_model_id=model_id)
    )
    assert response.status_code == 201, response.text
    assert response.json()["checkpoint_model_id"] == model_id
    assert response.json()["parent_job_id"] == parent


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"checkpoint_job_id": 999}, "checkpoint_job_id", "does not exist"),
        ({"checkpoint_model_id": 999}, "checkpoint_model_id", "does not exist"),
        ({"checkpoint_job_id": "PARENT", "task_type": "pose"}, "checkpoint_job_id", "not pose"),
        ({"checkpoint_job_id": "PARENT", "checkpoint_model_id": 1}, "checkpoint_model_id", "not both"),
    ],
)
def test_unusable_starting_points_are_refused(
    client: TestClient, db: Database, yolo_dataset: Path, overrides: dict[str, Any], field: str, reason: str
) -> None:
    parent = finished_job(client, db, yolo_dataset)
    body = job_body(yolo_dataset, name="tuned", **overrides)
    if body.get("checkpoint_job_id") == "PARENT":
        body["checkpoint_job_id"] = parent
    response = client.post("/api/v1/training/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == field and reason in error["reason"]
    with db.session() as s:
        assert s.query(TrainingJob).count() == 1


def test_a_job_without_best_weights_cannot_be_a_parent(
    client: TestClient, db: Database, yolo_dataset: Path
) -> None:
    parent = finished_job(client, db, yolo_dataset, best_checkpoint=None, status="failed")
    response = client.post(
        "/api/v1/training/jobs", json=job_body(yolo_dataset, name="tuned", checkpoint_job_id=parent)
    )
    assert response.status_code == 422
    assert "no best checkpoint" in response.json()["errors"][0]["reason"]
