"""Preflight: what a UI shows before Start, collected in one answer, without creating anything."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.db import Database
from app.core.workers import announce
from app.main import create_app
from app.models import JobEvent, Project, TrainingJob
from tests.factories import make_job, make_yolo_dataset

pytestmark = pytest.mark.integration
URL = "/api/v1/training/preflight"


@pytest.fixture
def client(db: Database, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(db), headers=admin_headers) as c:
        yield c


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_yolo_dataset(tmp_path / "shapes", train=2, val=1, size=64)


def counts(db: Database) -> tuple[int | None, ...]:
    with db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Project, TrainingJob, JobEvent))


def body(dataset: Path, **fields: Any) -> dict[str, Any]:
    return {
        "name": "first run",
        "project": "demo",
        "model_name": "yolo11n",
        "dataset_path": str(dataset),
        "config": {"epochs": 5, "imgsz": 320},
        **fields,
    }


def test_a_good_request_shows_everything_and_creates_nothing(
    client: TestClient, db: Database, dataset: Path, redis_client: redis.Redis
) -> None:
    before = counts(db)
    result = client.post(URL, json=body(dataset)).json()
    assert result["ok"] is True and result["problems"] == []
    assert result["name"] == {"project": "demo", "name": "first run", "slug": "first-run", "available": True}
    assert result["model"] == {"model_name": "yolo11n", "source": "yolo11n.yaml"}
    assert result["dataset"] == {"path": str(dataset), "classes": ["red", "blue"], "num_classes": 2}
    config = result["config"]
    assert config["values"]["epochs"] == 5 and config["values"]["imgsz"] == 320
    assert "epochs: 5" in config["yaml"]
    assert config["cli_preview"].startswith("yolo detect train model=yolo11n.yaml")
    assert f"data={dataset / 'data.yaml'}" in config["cli_preview"]
    assert result["workers"]["available"] is False
    assert any("no live worker" in w for w in result["warnings"])
    assert counts(db) == before

    announce(redis_client, "gpu-box-0", {"id": "gpu-box-0", "queues": ["training", "inference"]})
    announce(redis_client, "infer-only", {"id": "infer-only", "queues": ["inference"]})
    result = client.post(URL, json=body(dataset)).json()
    assert result["workers"]["available"] is True
    assert [w["id"] for w in result["workers"]["workers"]] == ["gpu-box-0"]
    assert not any("no live worker" in w for w in result["warnings"])


def test_every_problem_is_listed_at_once(client: TestClient, db: Database, dataset: Path) -> None:
    with db.session() as s:
        make_job(s, name="First Run", project="demo")
    before = counts(db)
    request = body(dataset / "missing", model_name="yolo99z", config={"epochs": 5, "mosaik": 1.0})
    response = client.post(URL, json=request)
    assert response.status_code == 200
    result = response.json()
    assert result["ok"] is False
    fields = {p["field"] for p in result["problems"]}
    assert fields == {"model_name", "config.mosaik", "dataset_path", "name"}
    assert result["name"]["available"] is False
    assert result["config"] is None and result["dataset"] is None
    assert counts(db) == before


def test_config_warnings_are_shown(client: TestClient, dataset: Path) -> None:
    result = client.post(URL, json=body(dataset, config={"epochs": 5, "save": False})).json()
    assert result["ok"] is True
    assert any("save is false" in w for w in result["warnings"])


def test_a_malformed_body_is_422_like_job_creation(client: TestClient) -> None:
    response = client.post(URL, json={"name": "x", "project": "demo", "framework": "tensorflow"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_the_plain_pytorch_trainer_needs_no_dataset(client: TestClient, db: Database) -> None:
    request = {
        "name": "plain",
        "project": "demo",
        "framework": "pytorch",
        "task_type": "classification",
        "model_name": "tiny-mlp",
        "config": {"epochs": 2, "lr": 0.05},
    }
    result = client.post(URL, json=request).json()
    assert result["ok"] is True, result["problems"]
    assert result["config"]["values"] == {"epochs": 2, "lr": 0.05, "batch": 16}
    assert result["model"]["source"] == "examples/plain_pytorch/train.py"
    assert result["dataset"] is None
    bad = {**request, "task_type": "detection", "config": {"epochs": 0, "lr": "fast", "momentum": 0.9}}
    result = client.post(URL, json=bad).json()
    assert {p["field"] for p in result["problems"]} == {
        "task_type",
        "config.epochs",
        "config.lr",
        "config.momentum",
    }
    assert counts(db) == (0, 0, 0)
