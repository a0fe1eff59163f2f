"""Hostile input: path traversal in names and storage keys, datasets outside the import roots, bodies
that are too large, submissions faster than the rate limit. Each is a 4xx problem+json that changes
nothing (no row, no file)."""

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core import auth
from app.core.db import Database
from app.core.settings import get_settings
from app.keys.service import revoke_key
from tests.auth.conftest import World, assert_problem, snapshot
from tests.conftest import bearer_headers, clear_caches, make_api_key
from tests.dataset_api.conftest import files_under

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(api: TestClient, world: World) -> Iterator[TestClient]:
    with TestClient(api.app, headers=world.headers("admin")) as client:
        yield client


def job(dataset: str, **fields: Any) -> dict[str, Any]:
    return {"name": "run", "project": "alpha", "dataset_path": dataset, "config": {"epochs": 1}, **fields}


TRAVERSAL = ["../../etc", "..", "a/../../b", "/etc/../..", "..\\..\\windows", "a\x00b"]


def test_path_traversal_in_names_is_422(
    admin: TestClient, db: Database, world: World, yolo_dataset: Path
) -> None:
    storage = get_settings().resolved_storage_root
    before, files = snapshot(db), files_under(storage)
    for name in ["../evil", "a/b", "..", ".hidden", "/abs", "x" * 101, "a\\b"]:
        assert_problem(admin.post("/api/v1/projects", json={"name": name}), 422)
        assert_problem(admin.patch(f"/api/v1/projects/{world.alpha}", json={"name": name}), 422)
        assert_problem(admin.post("/api/v1/training/jobs", json=job(str(yolo_dataset), name=name)), 422)
        assert_problem(admin.post("/api/v1/training/jobs", json=job(str(yolo_dataset), project=name)), 422)
        upload = admin.post(
            "/api/v1/datasets",
            data={"project_id": str(world.alpha), "name": name},
            files={"file": ("d.zip", b"PK\x05\x06" + b"\x00" * 18, "application/zip")},
        )
        assert_problem(upload, 422)
    assert snapshot(db) == before and files_under(storage) == files


def test_path_traversal_in_storage_keys_is_422(admin: TestClient, db: Database, world: World) -> None:
    storage = get_settings().resolved_storage_root
    before, files = snapshot(db), files_under(storage)
    for key in [
        *TRAVERSAL,
        "projects/alpha/releases/../../../../etc/passwd.zip",
        "projects/alpha/releases/..zip",
    ]:
        assert_problem(admin.post("/api/v1/training/jobs", json=job(key)), 422)
        folder = {"project_id": world.alpha, "name": "copy", "source_path": key}
        assert admin.post("/api/v1/datasets/from-folder", json=folder).status_code in (404, 422)
        assert admin.post("/api/v1/training/extract-release", json={"zip_path": key}).status_code in (
            404,
            422,
        )
        assert admin.delete("/api/v1/training/releases", params={"zip_path": key}).status_code in (404, 422)
    assert snapshot(db) == before and files_under(storage) == files
    assert (storage / world.release).is_file()


def test_an_absolute_dataset_outside_the_import_roots_is_422(
    admin: TestClient, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yolo_dataset: Path
) -> None:
    from tests.factories import make_yolo_dataset

    allowed, elsewhere = tmp_path / "imports", tmp_path / "elsewhere"
    inside = make_yolo_dataset(allowed / "shapes", train=1, val=1, size=32)
    outside = make_yolo_dataset(elsewhere / "shapes", train=1, val=1, size=32)
    (allowed / "link").symlink_to(outside)  # a link inside a root that leads out of it
    monkeypatch.setenv("TRAINYARD_IMPORT_ROOTS", f"{allowed},{tmp_path / 'also'}")
    clear_caches()
    before = snapshot(db)
    for path in (outside, allowed / "link", allowed / ".." / "elsewhere" / "shapes", Path("/etc")):
        body = assert_problem(admin.post("/api/v1/training/jobs", json=job(str(path))), 422)
        assert "import root" in str(body["detail"])
        preflight = admin.post("/api/v1/training/preflight", json=job(str(path))).json()
        assert not preflight["ok"] and preflight["problems"][0]["field"] == "dataset_path"
    assert snapshot(db) == before
    assert admin.post("/api/v1/training/jobs", json=job(str(inside))).status_code == 201
    # Without TRAINYARD_IMPORT_ROOTS only storage is allowed.
    monkeypatch.delenv("TRAINYARD_IMPORT_ROOTS")
    clear_caches()
    assert_problem(admin.post("/api/v1/training/jobs", json=job(str(inside), name="again")), 422)


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINYARD_MAX_BODY_MB", "0.01")  # ~10 KB
    monkeypatch.setenv("TRAINYARD_MAX_UPLOAD_MB", "0.05")  # ~50 KB
    clear_caches()


def test_oversized_bodies_are_413(
    admin: TestClient, api: TestClient, db: Database, world: World, small_limits: None
) -> None:
    storage = get_settings().resolved_storage_root
    before, files = snapshot(db), files_under(storage)
    big = job("x", description="d" * 20_000)
    body = assert_problem(admin.post("/api/v1/training/jobs", json=big), 413)
    assert body["code"] == "PAYLOAD_TOO_LARGE"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"name": "run", "project": "alpha", "description": "'
        for _ in range(30):
            yield b"d" * 1000
        yield b'"}'

    chunked = admin.post(
        "/api/v1/training/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(chunked, 413)
    # Uploads have their own, larger limit; 30 KB passes it (and fails as a ZIP), 100 KB does not.
    for size, status in ((30_000, 422), (100_000, 413)):
        upload = admin.post(
            "/api/v1/datasets",
            data={"project_id": str(world.alpha), "name": "big"},
            files={"file": ("d.zip", _zip_of(size), "application/zip")},
        )
        assert_problem(upload, status)
    # Without a key, even an upload gets only the small limit (no 30 KB before the 401).
    anonymous = api.post(
        "/api/v1/datasets", data={"project_id": "1", "name": "x"}, files={"file": ("d.zip", _zip_of(30_000))}
    )
    assert_problem(anonymous, 413)
    assert snapshot(db) == before and files_under(storage) == files


def _zip_of(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("noise.bin", bytes(range(256)) * (size // 256))
    return buffer.getvalue()


def test_submissions_past_the_rate_limit_are_429(
    api: TestClient, db: Database, world: World, yolo_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINYARD_SUBMIT_RATE", "2/60s")
    clear_caches()
    headers = world.headers("member_alpha")
    for name in ("one", "two"):
        assert api.post(
            "/api/v1/training/jobs", json=job(str(yolo_dataset), name=name), headers=headers
        ).is_success
    before = snapshot(db)
    refused = api.post("/api/v1/training/jobs", json=job(str(yolo_dataset), name="three"), headers=headers)
    body = assert_problem(refused, 429)
    assert body["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert snapshot(db) == before
    # The limit is per key: another key of the same project still submits.
    other = api.post(
        "/api/v1/training/jobs", json=job(str(yolo_dataset), name="four"), headers=world.headers("admin")
    )
    assert other.status_code == 201


def test_unusable_dataset_paths_are_422_naming_the_field(
    admin: TestClient, api: TestClient, db: Database, world: World
) -> None:
    """`~user` of no such user, 5,000 characters, a 300-character name, class ids that are not integers
    (a member can ship such a data.yaml in its project's storage): 422 from a submission and a problem in
    a preflight, never a 500; no 4xx body shows where storage is on the server."""
    storage = get_settings().resolved_storage_root
    odd = storage / "projects/alpha/training_data/odd-names"
    odd.mkdir(parents=True)
    (odd / "data.yaml").write_text("train: images/train\nval: images/val\nnames:\n  0: red\n  cat: blue\n")
    before = snapshot(db)
    member = world.headers("member_alpha")
    for path in (
        "~nosuchuser/x",
        "d" * 5000,
        "projects/alpha/" + "n" * 300,
        "projects/alpha/training_data/odd-names",
    ):
        response = api.post("/api/v1/training/jobs", json=job(path), headers=member)
        body = assert_problem(response, 422)
        assert [e["field"] for e in body["errors"]] == ["dataset_path"], body
        assert str(storage) not in response.text
        preflight = api.post("/api/v1/training/preflight", json=job(path), headers=member)
        assert preflight.status_code == 200 and not preflight.json()["ok"]
        assert [p["field"] for p in preflight.json()["problems"]] == ["dataset_path"]
    long_name = {"project_id": world.alpha, "name": "long", "source_path": "projects/alpha/" + "n" * 300}
    refused = assert_problem(admin.post("/api/v1/datasets/from-folder", json=long_name), 422)
    assert [e["field"] for e in refused["errors"]] == ["source_path"]
    reason = assert_problem(admin.post("/api/v1/training/jobs", json=job(str(odd))), 422)["errors"][0][
        "reason"
    ]
    assert reason == "data.yaml names must map the class ids 0..1 to names"
    assert snapshot(db) == before


def test_refused_folders_do_not_show_server_paths(api: TestClient, db: Database, world: World) -> None:
    """The 404 of another project's folder and the 422s of dataset-path checks say the path as given."""
    storage = get_settings().resolved_storage_root
    (storage / "projects/alpha/datasets/raw").mkdir(parents=True)
    beta, alpha = world.headers("member_beta"), world.headers("member_alpha")
    folder = {"project_id": world.beta, "name": "stolen", "source_path": "projects/alpha/datasets/raw"}
    refused = api.post("/api/v1/datasets/from-folder", json=folder, headers=beta)
    assert assert_problem(refused, 404)["errors"] == [
        {"field": "source_path", "reason": "folder 'projects/alpha/datasets/raw' does not exist in storage"}
    ]
    for path in ("projects/alpha/datasets/raw", "projects/alpha/missing", "../x"):
        for who in (alpha, beta):
            response = api.post("/api/v1/training/jobs", json=job(path), headers=who)
            assert response.status_code in (404, 422) and str(storage) not in response.text, response.text


def test_a_key_revoked_by_this_process_is_refused_at_once(
    api: TestClient, db: Database, world: World, yolo_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API keeps a key it checked for a few seconds, but never past a revocation made in its process."""
    monkeypatch.setattr(auth, "recent_keys", auth.RecentKeys(seconds=3600))  # however slow this test runs
    key = make_api_key(db, "member", ["alpha"])
    first = api.post(
        "/api/v1/training/jobs", json=job(str(yolo_dataset), name="before"), headers=bearer_headers(key)
    )
    assert first.status_code == 201, first.text  # the key is now among the recently checked
    with db.session() as session:
        revoke_key(session, key)
    before = snapshot(db)
    refused = api.post(
        "/api/v1/training/jobs", json=job(str(yolo_dataset), name="after"), headers=bearer_headers(key)
    )
    assert assert_problem(refused, 401)["code"] == "UNAUTHORIZED"
    assert snapshot(db) == before
