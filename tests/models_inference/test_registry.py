"""The registry: a finished job registers its model once (upsert), with its lineage; the API lists,
filters, reads, downloads and exports models; the catalog routes under /models still answer."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.db import Database
from app.core.storage import get_storage
from app.model_registry.service import register_job
from app.models import ModelStatus, RegisteredModel, TrainingJob
from app.training import state
from app.training.reports import apply_report
from tests.conftest import bearer_headers, make_api_key
from tests.factories import make_job
from tests.models_inference.conftest import RESULTS, finished_job, make_ready, model_of
from trainyard_sdk.reports import CheckpointReport

pytestmark = pytest.mark.integration


def test_completed_job_registers_its_model_with_lineage(db: Database, shapes: Path) -> None:
    job_id = finished_job(db, "run one", dataset=shapes)
    with db.session() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        model = model_of(session, job_id)
        assert model.weights_key == f"{job.storage_prefix}/weights/best.pt"
        assert (model.project_id, model.task_type, model.framework, model.format) == (
            job.project_id,
            "detection",
            "ultralytics",
            "pt",
        )
        assert model.class_names == ["red", "blue"]
        assert model.imgsz == 64
        assert model.metrics["mAP50-95"] == 0.42 and model.best_epoch == 2
        assert model.package_versions == {"ultralytics": "8.4.190", "torch": "2.14.1"}
        assert model.config == job.config and model.dataset_path == str(shapes)
        assert model.status == ModelStatus.PENDING and model.size_bytes == len(b"not really a checkpoint")


def test_a_fine_tuned_job_registers_with_its_parents_lineage(db: Database) -> None:
    parent = finished_job(db, "base run")
    child = finished_job(db, "tuned run", parent_job_id=parent)
    with db.session() as session:
        model = model_of(session, child)
        assert model.job_status == "completed" and model.base_weights_sha256 is None  # the parent's


def test_registering_the_same_job_again_updates_not_duplicates(db: Database) -> None:
    job_id = finished_job(db, "run two")
    with db.session() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        first = model_of(session, job_id).id
        job.results = {**RESULTS, "best_metrics": {"mAP50-95": 0.9}}
        register_job(session, job)
        register_job(session, job)
    with db.session() as session:
        count = session.scalar(select(func.count()).select_from(RegisteredModel))
        assert count == 1
        model = model_of(session, job_id)
        assert model.id == first and model.metrics == {"mAP50-95": 0.9}


def test_class_names_come_from_the_dataset_when_the_trainer_did_not_say(db: Database, shapes: Path) -> None:
    results = {k: v for k, v in RESULTS.items() if k != "model_info"}
    job_id = finished_job(db, "no info", dataset=shapes, results=results)
    with db.session() as session:
        model = model_of(session, job_id)
        assert model.class_names == ["red", "blue"]
        assert "ultralytics" in model.package_versions  # this process's versions as a fallback


def test_stopped_job_registers_only_with_a_best_checkpoint(db: Database) -> None:
    with db.session() as session:
        job_id = make_job(session, name="stopped bare").id
    with db.session() as session:
        state.claim(session, job_id, 1, "tester", 30)
    with db.session() as session:
        state.stopped(session, job_id, 1)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(RegisteredModel)) == 0

    with db.session() as session:
        job_id = make_job(session, name="stopped best").id
    with db.session() as session:
        job = state.claim(session, job_id, 1, "tester", 30)
        assert job is not None
        key = f"{job.storage_prefix}/weights/best.pt"
    get_storage().put_bytes(key, b"weights")
    with db.session() as session:
        best = CheckpointReport(kind="best", path=key, epoch=1, size_bytes=7, metrics={"mAP50-95": 0.3})
        apply_report(session, job_id, 1, best)
    with db.session() as session:
        state.stopped(session, job_id, 1)
    with db.session() as session:
        model = model_of(session, job_id)
        assert model.job_status == "stopped" and model.metrics == {"mAP50-95": 0.3} and model.best_epoch == 1


def test_list_filter_read_download_export(client: TestClient, db: Database) -> None:
    good = make_ready(db, finished_job(db, "good", project="alpha"))
    weak = finished_job(db, "weak", project="beta", results={**RESULTS, "best_metrics": {"mAP50-95": 0.1}})

    body = client.get("/api/v1/models").json()
    assert body["total"] == 2
    assert [m["id"] for m in client.get("/api/v1/models?project=alpha").json()["items"]] == [good]
    assert [m["id"] for m in client.get("/api/v1/models?min_metric=0.4").json()["items"]] == [good]
    assert client.get("/api/v1/models?metric=mAP50-95&min_metric=0.05").json()["total"] == 2
    assert client.get("/api/v1/models?task=classification").json()["total"] == 0
    assert client.get("/api/v1/models?status=ready").json()["total"] == 1

    model = client.get(f"/api/v1/models/{good}").json()
    assert model["lineage"]["job_id"] is not None and model["class_names"] == ["red", "blue"]
    with db.session() as session:
        weak_id = model_of(session, weak).id
    assert client.get(f"/api/v1/models/{weak_id}").json()["status"] == "pending"

    download = client.get(f"/api/v1/models/{good}/weights")
    assert download.status_code == 200 and download.content == b"not really a checkpoint"

    exported = client.post(f"/api/v1/models/{good}/export-best").json()
    assert exported["exported_key"].endswith(f"/model/registry/{good}/best.pt")
    assert get_storage().exists(exported["exported_key"])
    assert client.post(f"/api/v1/models/{good}/export-best").status_code == 200  # idempotent

    missing = client.get("/api/v1/models/9999")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_catalog_routes_still_answer_beside_model_ids(client: TestClient, db: Database) -> None:
    catalog = client.get("/api/v1/models/catalog")
    assert catalog.status_code == 200 and any(m["name"] == "yolo11n" for m in catalog.json())
    schema = client.get("/api/v1/models/yolo11n/config-schema")
    assert schema.status_code == 200 and schema.json()["model_name"] == "yolo11n"
    model_id = make_ready(db, finished_job(db, "beside"))
    assert client.get(f"/api/v1/models/{model_id}").json()["id"] == model_id


def test_a_project_key_sees_only_its_projects_models(client: TestClient, db: Database) -> None:
    mine = make_ready(db, finished_job(db, "mine", project="ours"))
    theirs = make_ready(db, finished_job(db, "theirs", project="others"))
    headers = bearer_headers(make_api_key(db, role="member", projects=["ours"]))
    listed = client.get("/api/v1/models", headers=headers).json()
    assert [m["id"] for m in listed["items"]] == [mine]
    assert client.get(f"/api/v1/models/{theirs}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/models/{theirs}/weights", headers=headers).status_code == 404
    assert client.get(f"/api/v1/models/{mine}", headers=headers).status_code == 200
    assert client.get("/api/v1/models", headers={"Authorization": ""}).status_code == 401
