"""The API remembers which model a synchronous request names for a moment (app/inference/recent_models.py):
a deploy, rollback or revert is still served by the very next request, and what one key resolved is
never served to a key that may not see it. No worker runs: the request queued for one shows which
model the API sent it."""

import base64
import json
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.errors import ErrorCode
from app.core.tasks import Queue, TaskName
from app.models import ModelStatus, RegisteredModel
from tests.conftest import bearer_headers, make_api_key
from tests.dataset_api.conftest import assert_problem
from tests.models_inference.conftest import finished_job, make_ready
from tests.models_inference.test_deployments import _project

pytestmark = pytest.mark.integration


def _jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 20, 20)).save(buffer, "JPEG")
    return buffer.getvalue()


def infer(client: TestClient, form: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    """POST /inference with no worker to answer: 504 once the request waited `timeout`."""
    files = [("files", ("a.jpg", _jpeg(), "image/jpeg"))]
    data = {**{k: str(v) for k, v in form.items()}, "timeout": "0.05"}
    return client.post("/api/v1/inference", data=data, files=files, headers=headers or {})


def queued_requests(redis_client: redis.Redis) -> list[int]:
    """The models of the inference requests waiting in the queue (taken off it; validations are left)."""
    models, others = [], []
    while (raw := redis_client.rpop(Queue.INFERENCE)) is not None:
        message = json.loads(raw)
        if message["headers"]["task"] != TaskName.INFER:
            others.append(raw)
            continue
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        models.append(int(args[0]["model"]["id"]))
    if others:
        redis_client.lpush(Queue.INFERENCE, *reversed(others))
    return models


def served(client: TestClient, redis_client: redis.Redis, form: dict[str, Any]) -> int:
    response = infer(client, form)
    assert response.status_code == 504, response.text
    [model] = queued_requests(redis_client)
    return model


def test_a_deploy_rollback_or_revert_is_served_by_the_next_request(
    client: TestClient, db: Database, redis_client: redis.Redis
) -> None:
    a, b = (make_ready(db, finished_job(db, name, project="shop")) for name in ("a", "b"))
    project = _project(client, "shop")
    url = f"/api/v1/projects/{project}/deployments"
    active = {"project_id": project, "task": "detection"}

    assert client.post(url, json={"model_id": a}).status_code == 201
    assert [served(client, redis_client, active) for _ in range(2)] == [a, a]  # the second remembered
    assert client.post(url, json={"model_id": b}).status_code == 201
    assert served(client, redis_client, active) == b
    assert client.post(f"{url}/rollback").status_code == 200
    assert served(client, redis_client, active) == a
    assert client.delete(url).status_code == 200
    assert assert_problem(infer(client, active), 409)["code"] == ErrorCode.CONFLICT
    assert queued_requests(redis_client) == []


def test_a_model_that_stopped_being_ready_is_refused_at_once(
    client: TestClient, db: Database, redis_client: redis.Redis
) -> None:
    """A change of the model's row in this process (here: marked failed) voids what was remembered."""
    model = make_ready(db, finished_job(db, "m", project="shop"))
    assert served(client, redis_client, {"model_id": model}) == model
    with db.session() as session:
        session.get_one(RegisteredModel, model).status = ModelStatus.FAILED
    assert assert_problem(infer(client, {"model_id": model}), 409)["code"] == ErrorCode.MODEL_NOT_READY


def test_what_one_key_resolved_is_not_served_to_a_key_that_may_not_see_it(
    client: TestClient, db: Database, redis_client: redis.Redis
) -> None:
    model = make_ready(db, finished_job(db, "m", project="shop"))
    assert served(client, redis_client, {"model_id": model}) == model  # the admin's, remembered
    other = bearer_headers(make_api_key(db, "viewer", ["elsewhere"]))
    assert assert_problem(infer(client, {"model_id": model}, other), 404)["code"] == ErrorCode.NOT_FOUND
    assert queued_requests(redis_client) == []
