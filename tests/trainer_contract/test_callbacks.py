"""The callback API against both databases: each report lands like the worker's own; a wrong token is
401, a finished job or a stale attempt is 409, and a refused call changes nothing."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.db import Database
from app.core.events import lock_job
from app.core.security import job_token, token_hash
from app.core.settings import get_settings
from app.core.storage import get_storage
from app.main import create_app
from app.models import JobEvent, TrainingJob, TrainingLog
from app.training import state
from tests.factories import make_job

pytestmark = pytest.mark.integration

ENDPOINT_BODIES: dict[str, dict[str, Any]] = {
    "started": {"pid": 42, "hostname": "far-away"},
    "progress": {"epoch": 1, "total_epochs": 2, "eta_seconds": 3.5},
    "metrics": {"epoch": 1, "train": {"loss": 0.5}, "val": {"accuracy": 0.8}},
    "checkpoint": {
        "kind": "best",
        "path": "s3://bucket/run/best.pt",
        "epoch": 1,
        "metrics": {"accuracy": 0.8},
    },
    "log": {"level": "info", "message": "hello"},
    "completion": {"status": "completed", "results": {"best_epoch": 1, "epochs_completed": 1}},
}


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    """No API key: trainers call back with their job token only."""
    with TestClient(create_app(db)) as c:
        yield c


@pytest.fixture
def reader(db: Database, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    """What a user sees of the job, through the API with an admin key."""
    with TestClient(create_app(db), headers=admin_headers) as c:
        yield c


@pytest.fixture
def running(db: Database) -> tuple[int, str]:
    """A job claimed by a worker (attempt 1), and the token of that attempt."""
    with db.session() as s:
        job_id = make_job(s).id
    with db.session() as s:
        state.claim(s, job_id, 1, "worker-a", 60)
    return job_id, job_token(job_id, 1)


def url(job_id: int, endpoint: str) -> str:
    return f"/api/v1/training/jobs/{job_id}/callback/{endpoint}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def snapshot(db: Database, job_id: int) -> tuple[Any, ...]:
    """Everything a refused callback must leave as it was."""
    with db.session() as s:
        job = s.get_one(TrainingJob, job_id)
        events = s.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id))
        logs = s.scalar(select(func.count()).select_from(TrainingLog).where(TrainingLog.job_id == job_id))
        return (
            events,
            logs,
            job.status,
            job.attempt,
            job.last_event_seq,
            job.current_epoch,
            job.total_epochs,
            job.best_checkpoint,
            job.last_checkpoint,
            job.results,
            job.error_code,
            job.updated_at,
        )


def events(db: Database, job_id: int) -> list[JobEvent]:
    with db.session() as s:
        return list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))


def test_each_report_lands_in_the_job_like_the_workers_own(
    client: TestClient, reader: TestClient, db: Database, running: tuple[int, str]
) -> None:
    job_id, token = running
    for endpoint in ("started", "progress", "metrics", "checkpoint", "log"):
        response = client.post(url(job_id, endpoint), json=ENDPOINT_BODIES[endpoint], headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ok"
    batch = {
        "logs": [{"level": "WARNING", "message": "a"}, {"message": "b", "timestamp": "2026-01-01T00:00:00Z"}]
    }
    response = client.post(url(job_id, "log"), json=batch, headers={"X-Job-Token": token})
    assert response.json()["received"] == 2
    response = client.post(
        url(job_id, "completion"), json=ENDPOINT_BODIES["completion"], headers=bearer(token)
    )
    assert response.status_code == 200, response.text

    recorded = events(db, job_id)
    assert [e.seq for e in recorded] == list(range(1, len(recorded) + 1))
    assert [e.type for e in recorded] == [
        "status",
        "status",
        "log",
        "progress",
        "metrics",
        "checkpoint",
        "log",
        "log",
        "log",
        "status",
    ]
    assert recorded[2].data["message"] == "trainer started (pid 42)"
    assert recorded[2].data["metadata"] == {"pid": 42, "hostname": "far-away"}
    # The contract's names (docs/trainer-contract.md), whichever the trainer used.
    progress = {"epoch": 1, "epochs": 2, "batch": None, "batches": None, "eta_s": 3.5, "phase": "train"}
    assert recorded[3].data == progress
    assert recorded[-1].data["status"] == "completed"
    job = reader.get(f"/api/v1/training/jobs/{job_id}").json()
    assert job["status"] == "completed"
    assert job["current_epoch"] == 1
    assert job["checkpoints"]["best"] == "s3://bucket/run/best.pt"
    assert job["results"]["epochs_completed"] == 1
    levels = [log["level"] for log in reader.get(f"/api/v1/training/jobs/{job_id}/logs").json()["logs"]]
    assert sorted(levels) == ["INFO", "INFO", "INFO", "WARNING"]


def test_failed_completion_records_the_error(
    client: TestClient, reader: TestClient, db: Database, running: tuple[int, str]
) -> None:
    job_id, token = running
    body = {"status": "failed", "error_code": "OOM", "error_message": "CUDA out of memory"}
    assert client.post(url(job_id, "completion"), json=body, headers=bearer(token)).status_code == 200
    job = reader.get(f"/api/v1/training/jobs/{job_id}").json()
    assert (job["status"], job["error_code"], job["error_message"]) == ("failed", "OOM", "CUDA out of memory")
    assert [e.type for e in events(db, job_id)][-2:] == ["error", "status"]


def _wrong_credentials(job_id: int, token: str, other_token: str) -> list[dict[str, str]]:
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    return [
        {},
        bearer(""),
        bearer("not-a-token"),
        bearer(forged),
        bearer(other_token),  # a real token, of another job
        {"Authorization": f"Basic {token}"},
        {"X-Job-Token": forged},
        bearer(token.replace(".1.", ".2.", 1)),  # a made-up attempt
    ]


@pytest.mark.parametrize("endpoint", list(ENDPOINT_BODIES))
def test_a_wrong_or_missing_token_is_401_and_changes_nothing(
    client: TestClient, db: Database, running: tuple[int, str], endpoint: str
) -> None:
    job_id, token = running
    with db.session() as s:
        other = make_job(s, name="other").id
    before = snapshot(db, job_id)
    for headers in _wrong_credentials(job_id, token, job_token(other, 1)):
        response = client.post(url(job_id, endpoint), json=ENDPOINT_BODIES[endpoint], headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "UNAUTHORIZED"
    assert snapshot(db, job_id) == before


def test_a_token_for_another_attempt_than_the_body_says_is_401(
    client: TestClient, db: Database, running: tuple[int, str]
) -> None:
    job_id, token = running
    before = snapshot(db, job_id)
    body = {**ENDPOINT_BODIES["progress"], "attempt": 2}
    assert client.post(url(job_id, "progress"), json=body, headers=bearer(token)).status_code == 401
    assert snapshot(db, job_id) == before


def test_a_revoked_token_is_401(client: TestClient, db: Database, running: tuple[int, str]) -> None:
    job_id, token = running
    with db.session() as s:
        s.get_one(TrainingJob, job_id).callback_token_hash = token_hash("something else")
    before = snapshot(db, job_id)
    response = client.post(url(job_id, "progress"), json=ENDPOINT_BODIES["progress"], headers=bearer(token))
    assert response.status_code == 401
    assert snapshot(db, job_id) == before


@pytest.mark.parametrize("endpoint", list(ENDPOINT_BODIES))
def test_a_stale_attempt_is_409_and_changes_nothing(
    client: TestClient, db: Database, running: tuple[int, str], endpoint: str
) -> None:
    job_id, old_token = running
    with db.session() as s:
        state.requeue(s, lock_job(s, job_id), "worker lost", max_attempts=3)
    with db.session() as s:
        state.claim(s, job_id, 2, "worker-b", 60)
    before = snapshot(db, job_id)
    response = client.post(url(job_id, endpoint), json=ENDPOINT_BODIES[endpoint], headers=bearer(old_token))
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "stale" in response.json()["detail"]
    assert snapshot(db, job_id) == before
    # The new attempt's token is accepted.
    response = client.post(
        url(job_id, endpoint), json=ENDPOINT_BODIES[endpoint], headers=bearer(job_token(job_id, 2))
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("endpoint", list(ENDPOINT_BODIES))
def test_a_finished_job_is_409_and_changes_nothing(
    client: TestClient, db: Database, running: tuple[int, str], endpoint: str
) -> None:
    job_id, token = running
    with db.session() as s:
        state.complete(s, job_id, 1, {"epochs_completed": 2})
    before = snapshot(db, job_id)
    response = client.post(url(job_id, endpoint), json=ENDPOINT_BODIES[endpoint], headers=bearer(token))
    assert response.status_code == 409, response.text
    assert "finished" in response.json()["detail"]
    assert snapshot(db, job_id) == before


def test_a_queued_job_takes_no_reports(client: TestClient, db: Database) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    before = snapshot(db, job_id)
    headers = bearer(job_token(job_id, 1))
    assert (
        client.post(url(job_id, "progress"), json=ENDPOINT_BODIES["progress"], headers=headers).status_code
        == 409
    )
    assert snapshot(db, job_id) == before


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        ("completion", {"status": "failed", "error_code": "OOM"}, "failed.message"),
        ("completion", {"status": "paused"}, "body"),  # "stopped" is a valid outcome since stop/resume
        ("progress", {"epoch": -1, "total_epochs": 2}, "epoch"),
        ("metrics", {"epoch": 1, "train": {"loss": "high"}}, "train.loss"),
        ("log", {"logs": []}, "logs"),
        ("log", {"level": "LOUD", "message": "x"}, "logs.0.level"),
        ("checkpoint", {"kind": "best", "path": "/etc/passwd"}, "path"),
        ("checkpoint", {"kind": "best", "path": "projects/elsewhere/weights/best.pt"}, "path"),
        # Numbers and dates beyond what the database and JSON can hold.
        ("progress", {"epoch": 10**30, "epochs": 2}, "epoch"),
        ("progress", {"epoch": 1, "epochs": 10**30}, "epochs"),
        ("metrics", {"epoch": 10**30, "train": {}, "val": {}}, "epoch"),
        ("checkpoint", {"kind": "best", "path": "s3://b/best.pt", "epoch": 10**30}, "epoch"),
        (
            "completion",
            {"status": "completed", "results": {"best_epoch": 10**30}},
            "completed.results.best_epoch",
        ),
        ("log", {"message": "x", "timestamp": "0001-01-01T00:00:00Z"}, "logs.0.timestamp"),
        ("log", {"message": "x", "timestamp": "9999-12-31T23:59:59-05:00"}, "logs.0.timestamp"),
    ],
)
def test_a_malformed_or_out_of_range_report_is_422_and_changes_nothing(
    client: TestClient,
    db: Database,
    running: tuple[int, str],
    endpoint: str,
    body: dict[str, Any],
    field: str,
) -> None:
    job_id, token = running
    before = snapshot(db, job_id)
    response = client.post(url(job_id, endpoint), json=body, headers=bearer(token))
    assert response.status_code == 422, response.text
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()
    assert snapshot(db, job_id) == before


def test_a_checkpoint_file_in_the_runs_folder_is_copied_into_storage(
    client: TestClient, reader: TestClient, db: Database, running: tuple[int, str]
) -> None:
    job_id, token = running
    snapshot_file = get_settings().runs_dir / "elsewhere" / "best-epoch3.pt"
    snapshot_file.parent.mkdir(parents=True)
    snapshot_file.write_bytes(b"weights" * 10)
    body = {"is_best": True, "checkpoint_path": str(snapshot_file), "epoch": 3}
    assert client.post(url(job_id, "checkpoint"), json=body, headers=bearer(token)).status_code == 200
    listing = reader.get(f"/api/v1/training/jobs/{job_id}/checkpoints").json()
    key = listing["best"]
    assert key.endswith("/weights/best.pt") and key.startswith("projects/demo/model/training/run/")
    assert get_storage().path(key).read_bytes() == b"weights" * 10
    assert listing["history"][0]["size_bytes"] == 70
    # A key already in the job's storage is recorded as is.
    body = {"kind": "last", "path": key, "epoch": 3}
    assert client.post(url(job_id, "checkpoint"), json=body, headers=bearer(token)).status_code == 200
    assert reader.get(f"/api/v1/training/jobs/{job_id}").json()["checkpoints"]["last"] == key


def test_unknown_job_with_a_made_up_token_is_401_not_404(client: TestClient, db: Database) -> None:
    response = client.post(
        url(999_999, "progress"), json=ENDPOINT_BODIES["progress"], headers=bearer("ty1.1.x")
    )
    assert response.status_code == 401


def test_tokens_are_per_attempt_and_never_stored(
    db: Database, running: tuple[int, str], tmp_path: Path
) -> None:
    job_id, token = running
    assert job_token(job_id, 2) != token
    with db.session() as s:
        job = s.get_one(TrainingJob, job_id)
        assert job.callback_token_hash == token_hash(token)
        assert token not in repr(job.__dict__)


# -- bad input from a trainer: 4xx, never a 500, never a half-written job ---------------------------


@pytest.mark.parametrize("header", ["X-Job-Token", "Authorization"])
@pytest.mark.parametrize("mangle", ["digit", "letter", "space"])
def test_a_token_with_characters_beyond_ascii_is_401(
    client: TestClient, db: Database, running: tuple[int, str], header: str, mangle: str
) -> None:
    job_id, token = running
    prefix, attempt, signature = token.split(".")
    bad = {
        "digit": f"{prefix}.\u00b2.{signature}",  # '²'.isdigit() holds, int('²') fails
        "letter": f"{prefix}.{attempt}.{signature[:-1]}\u00e9",
        "space": f"{prefix}.{attempt}.{signature}\u00a0",
    }[mangle]
    value = bad if header == "X-Job-Token" else f"Bearer {bad}"
    before = snapshot(db, job_id)
    response = client.post(
        url(job_id, "progress"), json=ENDPOINT_BODIES["progress"], headers={header: value.encode("latin-1")}
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "UNAUTHORIZED"
    assert snapshot(db, job_id) == before


def test_metrics_that_are_not_finite_are_kept_as_null_and_every_event_stays_json(
    client: TestClient, reader: TestClient, db: Database, running: tuple[int, str]
) -> None:
    job_id, token = running
    # What Python's json.dumps writes for float('nan') and float('inf'): not JSON, but trainers send it.
    raw = (
        '{"epoch": 1, "train": {"loss": NaN}, '
        '"val": {"mAP50": Infinity, "precision": -Infinity, "recall": 0.5}}'
    )
    headers = {**bearer(token), "Content-Type": "application/json"}
    assert client.post(url(job_id, "metrics"), content=raw, headers=headers).status_code == 200
    checkpoint = '{"kind": "best", "path": "s3://b/best.pt", "epoch": 1, "metrics": {"mAP50": NaN}}'
    assert client.post(url(job_id, "checkpoint"), content=checkpoint, headers=headers).status_code == 200
    done = (
        '{"status": "completed", '
        '"results": {"best_metrics": {"mAP50": NaN}, "training_time_seconds": Infinity}}'
    )
    assert client.post(url(job_id, "completion"), content=done, headers=headers).status_code == 200

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} in an event: not JSON")

    stream = reader.get(f"/api/v1/training/jobs/{job_id}/events").text
    data = [line.removeprefix("data: ") for line in stream.splitlines() if line.startswith("data: ")]
    events = [json.loads(line, parse_constant=strict) for line in data]
    metrics = next(e["data"] for e in events if e["type"] == "metrics")
    assert metrics == {
        "epoch": 1,
        "train": {"loss": None},
        "val": {"mAP50": None, "precision": None, "recall": 0.5},
    }
    assert next(e["data"] for e in events if e["type"] == "checkpoint")["metrics"] == {"mAP50": None}
    results = events[-1]["data"]["results"]
    assert results["best_metrics"] == {"mAP50": None} and results["training_time_seconds"] is None
    history = reader.get(f"/api/v1/training/jobs/{job_id}/metrics").json()
    assert history["epochs"][0]["val_metrics"] == {"mAP50": None, "precision": None, "recall": 0.5}


def test_a_refused_checkpoint_path_reveals_no_server_folder(
    client: TestClient, db: Database, running: tuple[int, str], tmp_path: Path
) -> None:
    job_id, token = running
    runs = str(get_settings().runs_dir.resolve())
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"weights")
    for path in (str(outside), f"{runs}/../secret.pt", "/etc/passwd"):
        response = client.post(
            url(job_id, "checkpoint"), json={"kind": "best", "path": path}, headers=bearer(token)
        )
        assert response.status_code == 422, response.text
        assert runs not in response.text and str(get_settings().resolved_data_dir) not in response.text
