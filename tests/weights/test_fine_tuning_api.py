"""Fine-tuning from base weights through the real API and database: a job names imported weights by
name, the resolver checks they fit its task and model, the stored config says truthfully whether the run
starts from weights, and the registered model's lineage records the base weights' sha256."""

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.storage import get_storage
from app.models import RegisteredModel, TrainingJob
from app.training import state
from app.training.reports import apply_report
from app.weights.service import mark_validated
from tests.factories import make_yolo_dataset
from tests.weights.conftest import fresh_checkpoint
from trainyard_sdk.reports import CheckpointReport

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("tune") / "shapes", train=2, val=1, size=64)


@pytest.fixture(scope="session")
def yolo11s_pt(tmp_path_factory: pytest.TempPathFactory, session_dir: Path) -> Path:
    return fresh_checkpoint(tmp_path_factory.mktemp("small") / "yolo11s.pt", "yolo11s.yaml")


@pytest.fixture(scope="session")
def seg_pt(tmp_path_factory: pytest.TempPathFactory, session_dir: Path) -> Path:
    return fresh_checkpoint(tmp_path_factory.mktemp("seg") / "yolo11n-seg.pt", "yolo11n-seg.yaml")


def imported(client: TestClient, db: Database, pt: Path, name: str, ready: bool = True) -> dict[str, Any]:
    """Base weights as a worker leaves them once it has loaded them (`ready`)."""
    response = client.post("/api/v1/weights", files={"file": (pt.name, pt.read_bytes())}, data={"name": name})
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    if ready:
        with db.session() as session:
            mark_validated(session, record["id"], True, None)
    return record


def job(shapes: Path, name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "project": "tune", "dataset_path": str(shapes), "config": {"epochs": 1}, **fields}


def test_a_job_starts_from_base_weights_and_says_so(
    client: TestClient, db: Database, shapes: Path, yolo11n_pt: Path
) -> None:
    weights = imported(client, db, yolo11n_pt, "yolo11n")
    tuned = client.post("/api/v1/training/jobs", json=job(shapes, "tuned", weights="yolo11n"))
    assert tuned.status_code == 201, tuned.text
    scratch = client.post("/api/v1/training/jobs", json=job(shapes, "scratch"))
    assert scratch.status_code == 201, scratch.text
    assert tuned.json()["config"]["pretrained"] is True
    assert scratch.json()["config"]["pretrained"] is False, "a run from the model YAML keeps no weights"
    with db.session() as session:
        row = session.get(TrainingJob, tuned.json()["id"])
        assert row is not None and row.checkpoint_path == weights["weights_key"]
    # A job starts from them: they stay.
    assert client.delete(f"/api/v1/weights/{weights['id']}").status_code == 409


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"weights": "nothing-here"}, "no base weights named 'nothing-here'"),
        ({"weights": "pending"}, "are pending"),
        ({"weights": "seg"}, "segmentation weights, not detection"),
        ({"weights": "yolo11n", "model_name": "yolo11s"}, "are yolo11n weights; model_name is yolo11s"),
        ({"weights": "yolo11n", "checkpoint_job_id": 1}, "not both weights and checkpoint_job_id"),
    ],
)
def test_weights_that_do_not_fit_are_a_422_naming_weights_and_nothing_is_written(
    client: TestClient,
    db: Database,
    shapes: Path,
    yolo11n_pt: Path,
    seg_pt: Path,
    yolo11s_pt: Path,
    fields: dict[str, Any],
    reason: str,
) -> None:
    imported(client, db, yolo11n_pt, "yolo11n")
    imported(client, db, seg_pt, "seg")
    imported(client, db, yolo11s_pt, "pending", ready=False)
    for route in ("/api/v1/training/jobs", "/api/v1/training/preflight"):
        response = client.post(route, json=job(shapes, "tuned", **fields))
        body = response.json()
        problems = body["errors"] if response.status_code == 422 else body["problems"]
        assert any(p["field"] == "weights" and reason in p["reason"] for p in problems), body
    with db.session() as session:
        assert session.query(TrainingJob).count() == 0


def test_the_registered_model_records_the_base_weights_it_descends_from(
    client: TestClient, db: Database, shapes: Path, yolo11n_pt: Path
) -> None:
    weights = imported(client, db, yolo11n_pt, "yolo11n")
    job_id = client.post("/api/v1/training/jobs", json=job(shapes, "tuned", weights="yolo11n")).json()["id"]
    with db.session() as session:
        claimed = state.claim(session, job_id, 1, "tester", 30)
        assert claimed is not None
        key = f"{claimed.storage_prefix}/weights/best.pt"
    get_storage().put_bytes(key, b"weights")
    with db.session() as session:
        apply_report(session, job_id, 1, CheckpointReport(kind="best", path=key, epoch=1, size_bytes=7))
    with db.session() as session:
        state.complete(session, job_id, 1, {"best_epoch": 1})
    with db.session() as session:
        model = session.query(RegisteredModel).filter_by(job_id=job_id).one()
        model_id = model.id
    lineage = client.get(f"/api/v1/models/{model_id}").json()["lineage"]
    assert lineage["base_weights_sha256"] == weights["sha256"]
    # A model fine-tuned from that model descends from the same base weights.
    child = client.post("/api/v1/training/jobs", json=job(shapes, "child", checkpoint_model_id=model_id))
    assert child.status_code == 201, child.text
    with db.session() as session:
        row = session.get(TrainingJob, child.json()["id"])
        assert row is not None
        from app.model_registry.service import base_weights_of

        assert base_weights_of(session, row) == weights["sha256"]
