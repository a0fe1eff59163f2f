"""Fixtures for the registry and deployments: an API client on a clean database (SQLite and PostgreSQL)
and finished jobs whose best.pt sits in storage, registered the way a worker registers them."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.core.db import Database
from app.core.settings import get_settings
from app.core.storage import get_storage
from app.main import create_app
from app.models import ModelStatus, RegisteredModel, TrainingJob
from app.training import state
from app.training.reports import apply_report
from tests.factories import make_job, make_yolo_dataset
from trainyard_sdk.reports import CheckpointReport


@pytest.fixture
def client(db: Database, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    """The API with an admin key on every request."""
    with TestClient(create_app(db), headers=admin_headers) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("registry") / "shapes", train=2, val=1, size=64)


RESULTS: dict[str, Any] = {
    "best_epoch": 2,
    "best_metrics": {"mAP50": 0.61, "mAP50-95": 0.42, "precision": 0.7, "recall": 0.5},
    "final_metrics": {"mAP50": 0.6},
    "epochs_completed": 3,
    "model_info": {
        "class_names": ["red", "blue"],
        "imgsz": 64,
        "package_versions": {"ultralytics": "8.4.190", "torch": "2.14.1"},
    },
}


def finished_job(
    db: Database,
    name: str,
    project: str = "demo",
    dataset: Path | None = None,
    results: dict[str, Any] | None = None,
    task: str = "detection",
    parent_job_id: int | None = None,
) -> int:
    """A job run to completion by hand: claimed, a best checkpoint in storage, completed (started from
    `parent_job_id`'s weights when given)."""
    with db.session() as session:
        job = make_job(session, name=name, project=project)
        job.task_type = task
        if parent_job_id is not None:
            job.parent_job_id = parent_job_id
            job.checkpoint_path = f"{job.storage_prefix}/start/weights.pt"
        if dataset is not None:
            job.dataset_path = str(dataset)
        job_id = job.id
    with db.session() as session:
        claimed = state.claim(session, job_id, 1, "tester", 30)
        assert claimed is not None
        key = f"{claimed.storage_prefix}/weights/best.pt"
    get_storage().put_bytes(key, b"not really a checkpoint")
    with db.session() as session:
        best = CheckpointReport(kind="best", path=key, epoch=2, size_bytes=23, metrics={"mAP50-95": 0.4})
        apply_report(session, job_id, 1, best)
    with db.session() as session:
        state.complete(session, job_id, 1, RESULTS if results is None else results)
    return job_id


def model_of(session: Session, job_id: int) -> RegisteredModel:
    job = session.get(TrainingJob, job_id)
    assert job is not None
    return session.query(RegisteredModel).filter_by(job_id=job_id).one()


def make_ready(db: Database, job_id: int) -> int:
    """What a worker's validation does once the weights load and predict."""
    with db.session() as session:
        model = model_of(session, job_id)
        model.status = ModelStatus.READY
        return model.id


@pytest.fixture
def storage_root(db: Database) -> Path:
    return get_settings().resolved_storage_root
