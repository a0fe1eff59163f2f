"""Base weights through the real API and database (SQLite and PostgreSQL): an admin imports a `.pt`
(checked without torch in the API, stored by content), everyone lists and reads them, the same bytes
twice are one record, bad files are refused with nothing stored, delete is refused while in use."""

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.settings import get_settings
from app.core.storage import get_storage
from app.models import BaseWeights
from tests.conftest import bearer_headers, clear_caches, make_api_key
from tests.factories import make_job

pytestmark = pytest.mark.integration


def upload(client: TestClient, data: bytes, filename: str = "yolo11n.pt", **form: str) -> httpx.Response:
    return client.post("/api/v1/weights", files={"file": (filename, data)}, data=form)


def stored_weights() -> list[Path]:
    folder = get_settings().resolved_storage_root / "weights"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_an_admin_imports_a_pt_and_it_is_described_and_stored_by_content(
    client: TestClient, yolo11n_pt: Path
) -> None:
    response = upload(client, yolo11n_pt.read_bytes())
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    import hashlib

    sha256 = hashlib.sha256(yolo11n_pt.read_bytes()).hexdigest()
    assert record["name"] == "yolo11n" and record["source"] == "yolo11n.pt"
    assert (record["sha256"], record["size_bytes"]) == (sha256, yolo11n_pt.stat().st_size)
    assert (record["task_type"], record["architecture"]) == ("detection", "yolo11n")
    assert len(record["class_names"]) == 80 and record["ultralytics_version"]
    assert record["status"] == "pending"  # until a worker has loaded it
    assert record["weights_key"] == f"weights/base/{sha256}.pt"
    assert get_storage().size(record["weights_key"]) == yolo11n_pt.stat().st_size


def test_importing_the_same_bytes_twice_gives_the_same_record(client: TestClient, yolo11n_pt: Path) -> None:
    first = upload(client, yolo11n_pt.read_bytes())
    again = upload(client, yolo11n_pt.read_bytes(), filename="copy.pt", name="another name")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["name"] == "yolo11n"
    assert client.get("/api/v1/weights").json()["total"] == 1
    assert len(stored_weights()) == 1


def test_a_name_taken_by_other_content_is_a_conflict(
    client: TestClient, yolo11n_pt: Path, tmp_path: Path
) -> None:
    from tests.weights.conftest import fresh_checkpoint

    assert upload(client, yolo11n_pt.read_bytes(), name="base").status_code == 201
    other = fresh_checkpoint(tmp_path / "seg.pt", "yolo11n-seg.yaml")
    response = upload(client, other.read_bytes(), name="base")
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "name"
    seg = upload(client, other.read_bytes(), name="seg")
    assert seg.status_code == 201 and seg.json()["task_type"] == "segmentation"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("random", "ZIP"),
        ("pickle", "ZIP"),
        ("dict", "no model"),
        ("linear", "torch.nn.modules.linear.Linear"),
        ("zip", "no data.pkl"),
    ],
)
def test_a_file_that_is_not_a_model_is_a_422_and_nothing_is_stored(
    client: TestClient, not_models: dict[str, bytes], kind: str, reason: str
) -> None:
    response = upload(client, not_models[kind], filename=f"{kind}.pt")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    error = response.json()["errors"][0]
    assert error["field"] == "file" and reason in error["reason"]
    assert client.get("/api/v1/weights").json()["total"] == 0
    assert stored_weights() == []


def test_a_pickle_that_would_run_code_runs_nothing(client: TestClient, tmp_path: Path) -> None:
    """The API reads what a .pt names without importing or calling any of it."""
    import io
    import pickle
    import zipfile

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("evil/data.pkl", pickle.dumps({"model": Evil()}, protocol=2))
    response = upload(client, archive.getvalue(), filename="evil.pt")
    assert response.status_code == 422 and "system" in response.json()["errors"][0]["reason"]
    assert not marker.exists() and stored_weights() == []


def test_an_empty_file_and_a_bad_name_are_422s_naming_the_field(client: TestClient, yolo11n_pt: Path) -> None:
    assert upload(client, b"").json()["errors"][0]["field"] == "file"
    response = upload(client, yolo11n_pt.read_bytes(), name="../etc")
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "name"
    assert stored_weights() == []


def test_an_oversized_upload_is_a_413(
    client: TestClient, yolo11n_pt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINYARD_MAX_BODY_MB", "1")
    monkeypatch.setenv("TRAINYARD_MAX_UPLOAD_MB", "2")
    clear_caches()
    response = upload(client, yolo11n_pt.read_bytes())
    assert response.status_code == 413 and response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert stored_weights() == []


def test_only_admins_import_and_delete_and_every_key_lists_and_reads(
    client: TestClient, db: Database, yolo11n_pt: Path
) -> None:
    record = upload(client, yolo11n_pt.read_bytes()).json()
    member = bearer_headers(make_api_key(db, "member", ["alpha"]))
    viewer = bearer_headers(make_api_key(db, "viewer", ["beta"]))
    refused = client.post(
        "/api/v1/weights", files={"file": ("mine.pt", yolo11n_pt.read_bytes())}, headers=member
    )
    assert refused.status_code == 403
    assert client.delete(f"/api/v1/weights/{record['id']}", headers=member).status_code == 403
    for headers in (member, viewer):
        assert client.get("/api/v1/weights", headers=headers).json()["items"][0]["id"] == record["id"]
        assert (
            client.get(f"/api/v1/weights/{record['id']}", headers=headers).json()["sha256"]
            == record["sha256"]
        )
    assert client.get("/api/v1/weights?task=pose").json()["total"] == 0
    assert client.get("/api/v1/weights/999").status_code == 404


def test_delete_is_refused_while_a_job_or_model_starts_from_them(
    client: TestClient, db: Database, yolo11n_pt: Path
) -> None:
    from app.models import RegisteredModel

    record = upload(client, yolo11n_pt.read_bytes()).json()
    with db.session() as session:
        job = make_job(session, name="tuned", checkpoint_path=record["weights_key"])
        job_id = job.id
    response = client.delete(f"/api/v1/weights/{record['id']}")
    assert response.status_code == 409 and f"job {job_id}" in response.json()["detail"]
    with db.session() as session:
        job = session.get(type(job), job_id)
        assert job is not None
        job.checkpoint_path = None
        model = RegisteredModel(
            project=job.project,
            job_id=job_id,
            name="tuned",
            framework="ultralytics",
            task_type="detection",
            architecture="yolo11n",
            weights_key="projects/demo/model/training/tuned/weights/best.pt",
            job_status="completed",
            base_weights_sha256=record["sha256"],
        )
        session.add(model)
    assert client.delete(f"/api/v1/weights/{record['id']}").status_code == 409
    with db.session() as session:
        session.query(RegisteredModel).delete()
    assert client.delete(f"/api/v1/weights/{record['id']}").status_code == 204
    assert client.get(f"/api/v1/weights/{record['id']}").status_code == 404
    assert stored_weights() == []
    with db.session() as session:
        assert session.query(BaseWeights).count() == 0
