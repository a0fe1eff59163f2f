"""A dashboard in a TestClient: an app on a real SQLite database and Redis, and signed-in browsers."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.events import EventType, lock_job, record_event
from app.core.jobs import JobStatus
from app.main import create_app
from app.models import TrainingJob
from tests.conftest import make_api_key
from tests.factories import make_job, make_yolo_dataset

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """Page rendering does not depend on the dialect: the services' PostgreSQL tests cover that."""
    return sqlite_url


@pytest.fixture
def app(db: Database) -> FastAPI:
    return create_app(db)


def sign_in(app: FastAPI, key: str) -> TestClient:
    client = TestClient(app, follow_redirects=False)
    response = client.post("/login", data={"api_key": key, "next": "/jobs"})
    assert response.status_code == 303, response.text
    return client


def csrf_of(client: TestClient) -> str:
    """The CSRF token the server put in the page for this session."""
    page = client.get("/jobs").text
    marker = '"X-CSRF-Token": "'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


@dataclass
class Jobs:
    alpha: int  # project alpha, running, with metrics, logs and a checkpoint
    beta: int  # project beta


def add_event(db: Database, job_id: int, type: EventType, data: dict[str, object]) -> None:
    with db.session() as session:
        record_event(session, lock_job(session, job_id), type, data)


def set_status(db: Database, job_id: int, status: JobStatus, **fields: object) -> None:
    with db.session() as session:
        job = lock_job(session, job_id)
        job.status = status
        for name, value in fields.items():
            setattr(job, name, value)
        record_event(session, job, EventType.STATUS, {"status": status, "attempt": job.attempt})


@pytest.fixture
def jobs(db: Database) -> Jobs:
    with db.session() as session:
        alpha = make_job(session, "a-run", project="alpha").id
        beta = make_job(session, "b-run", project="beta").id
    set_status(db, alpha, JobStatus.RUNNING)
    add_event(db, alpha, EventType.LOG, {"level": "INFO", "message": "training 2 epochs"})
    add_event(
        db, alpha, EventType.METRICS, {"epoch": 1, "train": {"box_loss": 1.5}, "val": {"mAP50-95": 0.25}}
    )
    add_event(db, alpha, EventType.PROGRESS, {"epoch": 1, "total": 2, "eta_seconds": 30.0})
    with db.session() as session:
        session.get(TrainingJob, alpha).current_epoch = 1  # type: ignore[union-attr]
    return Jobs(alpha, beta)


@pytest.fixture
def keys(db: Database) -> dict[str, str]:
    return {
        "admin": make_api_key(db, "admin"),
        "member_alpha": make_api_key(db, "member", ["alpha"]),
        "viewer_alpha": make_api_key(db, "viewer", ["alpha"]),
    }


@pytest.fixture
def admin(app: FastAPI, keys: dict[str, str], jobs: Jobs) -> Iterator[TestClient]:
    with sign_in(app, keys["admin"]) as client:
        yield client


@pytest.fixture(scope="session")
def yolo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("datasets") / "shapes", train=2, val=1, size=32)
