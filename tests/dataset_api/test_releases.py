"""Release ZIPs in storage: check-extracted, extract-release, delete; refusals leave nothing."""

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.dataset_api.conftest import assert_problem, files_under, make_project, zip_entries, zip_folder

pytestmark = pytest.mark.integration


def put_release(storage: Path, data: bytes, name: str = "Release 2025-03.zip", project: str = "demo") -> str:
    key = f"projects/{project}/releases/{name}"
    (storage / key).parent.mkdir(parents=True, exist_ok=True)
    (storage / key).write_bytes(data)
    return key


def test_extract_check_and_delete(client: TestClient, storage: Path, dice_dir: Path) -> None:
    make_project(client, "demo")
    key = put_release(storage, zip_folder(dice_dir))
    before = client.get("/api/v1/training/check-extracted", params={"zip_path": key})
    assert before.status_code == 200 and before.json()["extracted"] is False
    assert before.json()["target_dir"] == "projects/demo/training_data/release-2025-03"

    done = client.post("/api/v1/training/extract-release", json={"zip_path": key})
    assert done.status_code == 200, done.text
    assert done.json()["extracted"] and done.json()["up_to_date"] and done.json()["files"] > 5
    target = storage / "projects/demo/training_data/release-2025-03"
    assert (target / "annotations_detection.json").is_file()
    status = client.get("/api/v1/training/check-extracted", params={"zip_path": key}).json()
    assert status["extracted"] and status["up_to_date"]
    # Extracting again is a no-op; after the ZIP changes it is re-extracted in place.
    assert client.post("/api/v1/training/extract-release", json={"zip_path": key}).status_code == 200
    put_release(storage, zip_entries([("only.txt", b"new")]))
    os.utime(storage / key, ns=(1, 1))
    assert (
        client.get("/api/v1/training/check-extracted", params={"zip_path": key}).json()["up_to_date"] is False
    )
    assert client.post("/api/v1/training/extract-release", json={"zip_path": key}).json()["up_to_date"]
    assert sorted(p.name for p in target.iterdir()) == [".trainyard-release.json", "only.txt"]

    assert client.delete("/api/v1/training/releases", params={"zip_path": key}).status_code == 204
    assert not target.exists() and not (storage / key).exists()
    assert_problem(client.delete("/api/v1/training/releases", params={"zip_path": key}), 404)


@pytest.mark.parametrize(
    ("zip_path", "status"),
    [
        ("../outside.zip", 422),
        ("/etc/passwd", 422),
        ("projects/demo/../../x.zip", 422),
        ("projects/demo/training_data/a.zip", 422),
        ("projects/demo/releases/a.txt", 422),
        ("projects/nobody/releases/a.zip", 404),
        ("projects/demo/releases/missing.zip", 404),
    ],
)
def test_bad_zip_paths(client: TestClient, storage: Path, zip_path: str, status: int) -> None:
    make_project(client, "demo")
    assert_problem(client.post("/api/v1/training/extract-release", json={"zip_path": zip_path}), status)
    assert_problem(client.get("/api/v1/training/check-extracted", params={"zip_path": zip_path}), status)
    assert files_under(storage / "projects/demo/training_data") == []


@pytest.mark.parametrize(
    "entries",
    [
        [("ok.txt", b"x"), ("../../evil.txt", b"x")],
        [("images/a.jpg", b"\0" * (16 * 1024 * 1024))],
    ],
    ids=["zip slip", "bomb"],
)
def test_malicious_release_is_refused_and_leaves_nothing(
    client: TestClient, storage: Path, entries: list[tuple[str, bytes]]
) -> None:
    make_project(client, "demo")
    key = put_release(storage, zip_entries(entries))
    response = client.post("/api/v1/training/extract-release", json={"zip_path": key})
    assert 400 <= response.status_code < 500, response.text
    assert files_under(storage / "projects/demo/training_data") == []
    assert not (storage / "evil.txt").exists() and not (storage.parent / "evil.txt").exists()
