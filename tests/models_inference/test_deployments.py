"""Deployments: validate, swap the active model per (project, task), keep history, roll back, revert."""

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.models import ModelStatus
from tests.models_inference.conftest import RESULTS, finished_job, make_ready, model_of

pytestmark = pytest.mark.integration


def _project(client: TestClient, name: str) -> int:
    projects = client.get("/api/v1/projects", params={"search": name}).json()["items"]
    return int(next(p["id"] for p in projects if p["name"] == name))


def _active(client: TestClient, project: int) -> int | None:
    state = client.get(f"/api/v1/projects/{project}/deployments?task=detection").json()[0]
    return None if state["active_model"] is None else int(state["active_model"]["id"])


def test_deploy_rollback_revert_with_history(client: TestClient, db: Database) -> None:
    a, b, c = (make_ready(db, finished_job(db, name, project="shop")) for name in ("a", "b", "c"))
    project = _project(client, "shop")
    url = f"/api/v1/projects/{project}/deployments"

    for model in (a, b, c):
        response = client.post(url, json={"model_id": model})
        assert response.status_code == 201, response.text
        assert response.json()["active_model"]["id"] == model
    again = client.post(url, json={"model_id": c}).json()
    assert len(again["history"]) == 3  # deploying the active model again changes nothing

    assert client.post(f"{url}/rollback").json()["active_model"]["id"] == b
    assert client.post(f"{url}/rollback").json()["active_model"]["id"] == a
    nothing_left = client.post(f"{url}/rollback")
    assert nothing_left.status_code == 409
    assert _active(client, project) == a

    reverted = client.delete(url).json()
    assert reverted["active_model"] is None
    assert client.post(f"{url}/rollback").json()["active_model"]["id"] == a  # undo the revert

    history = client.get(f"{url}?task=detection").json()[0]["history"]
    actions = ["rollback", "revert", "rollback", "rollback", "deploy", "deploy", "deploy"]
    assert [h["action"] for h in history] == actions
    assert [h["model_id"] for h in history][:3] == [a, None, a]
    assert history[1]["previous_model_id"] == a


def test_deploy_refuses_what_it_cannot_serve(client: TestClient, db: Database) -> None:
    pending = model_of_id(db, finished_job(db, "pending", project="p1"))
    ready = make_ready(db, finished_job(db, "ready", project="p1"))
    foreign = make_ready(db, finished_job(db, "foreign", project="p2"))
    nameless = make_ready(
        db, finished_job(db, "nameless", project="p1", results={**RESULTS, "model_info": {"class_names": []}})
    )
    project = _project(client, "p1")
    url = f"/api/v1/projects/{project}/deployments"

    def refused(body: dict[str, object], status: int, text: str) -> None:
        response = client.post(url, json=body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert text in response.json()["detail"]

    refused({"model_id": pending}, 409, "not ready")
    refused({"model_id": foreign}, 422, "another project")
    refused({"model_id": ready, "task_type": "classification"}, 422, "is a detection model")
    refused({"model_id": nameless}, 422, "no class names")
    refused({"model_id": 424242}, 404, "does not exist")
    assert client.get(f"{url}?task=detection").json()[0]["active_model"] is None
    assert client.post("/api/v1/projects/99999/deployments", json={"model_id": ready}).status_code == 404


def model_of_id(db: Database, job_id: int) -> int:
    with db.session() as session:
        model = model_of(session, job_id)
        assert model.status == ModelStatus.PENDING
        return model.id
