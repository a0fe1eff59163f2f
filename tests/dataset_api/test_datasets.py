"""Registering DICE datasets over HTTP: from a ZIP, from a folder in storage; listing; bad input leaves
nothing behind (no row, no file)."""

import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.dataset_registry import service as dataset_service
from app.datasets.extract import ExtractLimits
from app.models import Dataset
from tests.dataset_api.conftest import (
    assert_problem,
    files_under,
    make_project,
    upload_dataset,
    zip_entries,
    zip_folder,
)
from tests.datasets.factories import det, detection_images, image, task_file, write_dice

pytestmark = pytest.mark.integration


def assert_nothing_written(db: Database, storage: Path) -> None:
    with db.session() as session:
        assert session.query(Dataset).count() == 0
    assert files_under(storage / "projects") == []
    assert files_under(storage / ".uploads") == []


def test_register_from_zip_has_the_seed_shape(client: TestClient, storage: Path, dice_zip: bytes) -> None:
    project = make_project(client, "Demo")
    response = upload_dataset(client, project["id"], dice_zip, name="Vehicles v1")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Vehicles v1" and body["project"] == "Demo"
    assert sorted(body["task_types"]) == ["classification", "detection", "pose", "segmentation"]
    assert body["total_images"] == 5 and body["splits"] == {"train": 3, "val": 1, "test": 1}
    det_summary = body["annotations"]["detection"]
    assert det_summary == {
        "file": "annotations_detection.json",
        "classes": ["cat", "dog"],
        "total_annotations": 5,
    }
    assert body["total_annotations"] == sum(a["total_annotations"] for a in body["annotations"].values())
    assert body["storage_path"] == "projects/demo/datasets/vehicles-v1/source"
    assert (storage / body["storage_path"] / "images/train/sub/c.jpg").is_file()
    assert client.get(f"/api/v1/datasets/{body['id']}").json() == body


def test_a_zip_with_one_top_folder_is_accepted(client: TestClient, dice_dir: Path) -> None:
    project = make_project(client)
    response = upload_dataset(client, project["id"], zip_folder(dice_dir, prefix="synthetic/"))
    assert response.status_code == 201, response.text


def test_list_filters_and_pages(client: TestClient, dice_zip: bytes, tmp_path: Path) -> None:
    project = make_project(client)
    only_detection = write_dice(
        tmp_path / "det", {"annotations_detection.json": task_file("object_detection", detection_images())}
    )
    ids = [
        upload_dataset(client, project["id"], dice_zip, name="all tasks").json()["id"],
        upload_dataset(client, project["id"], zip_folder(only_detection), name="cars_v2").json()["id"],
    ]
    listed = client.get("/api/v1/datasets").json()
    assert listed["total"] == 2 and [d["id"] for d in listed["datasets"]] == ids[::-1]
    pose = client.get("/api/v1/datasets", params={"task_type": "pose"}).json()
    assert [d["id"] for d in pose["datasets"]] == [ids[0]]
    detection = client.get("/api/v1/datasets", params={"task_type": "detection"}).json()
    assert detection["total"] == 2
    by_search = client.get("/api/v1/datasets", params={"search": "S_V"}).json()
    assert [d["id"] for d in by_search["datasets"]] == [ids[1]]
    # '_' is a literal, not LIKE's any-character ("all tasks" has "l t").
    assert client.get("/api/v1/datasets", params={"search": "l_t"}).json()["total"] == 0
    page = client.get("/api/v1/datasets", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 2 and [d["id"] for d in page["datasets"]] == [ids[0]]
    assert_problem(client.get("/api/v1/datasets", params={"task_type": "depth"}), 422, "task_type")
    assert_problem(client.get("/api/v1/datasets/424242"), 404)


def test_invalid_dice_names_the_annotation_and_leaves_nothing(
    client: TestClient, db: Database, storage: Path, tmp_path: Path
) -> None:
    project = make_project(client)
    broken = write_dice(
        tmp_path / "broken",
        {
            "annotations_detection.json": task_file(
                "object_detection",
                [
                    image(1, "a.jpg", "train", [det(1, 1, 0, [60, 40, 10, 10])]),  # outside 64x48
                    image(2, "b.jpg", "train", [det(2, 2, 7, [1, 1, 2, 2])]),  # unknown class
                    image(3, "c.jpg", "valid", []),  # bad split name
                ],
            )
        },
    )
    response = upload_dataset(client, project["id"], zip_folder(broken))
    body = assert_problem(response, 422, "outside the 64x48 image", "unknown class_id 7", "bad split name")
    fields = {e["field"] for e in body["errors"]}
    assert "annotations_detection.json:images[0].annotations[0].bbox" in fields
    assert_nothing_written(db, storage)


MALICIOUS = {
    "zip slip": [("../evil.txt", b"x")],
    "absolute path": [("/etc/evil", b"x")],
    "bomb": [("images/train/a.jpg", b"\0" * (20 * 1024 * 1024))],
}


def _symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("images/train/link.jpg")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("case", [*MALICIOUS, "symlink", "not a zip"])
def test_malicious_archives_are_refused_and_leave_nothing(
    client: TestClient, db: Database, storage: Path, case: str
) -> None:
    project = make_project(client)
    if case == "symlink":
        data = zip_entries([(_symlink_entry(), b"/etc/passwd")])
    elif case == "not a zip":
        data = b"PK\x03\x04 definitely not a zip"
    else:
        data = zip_entries(MALICIOUS[case])
    response = upload_dataset(client, project["id"], data)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert_nothing_written(db, storage)
    assert not (storage.parent / "evil.txt").exists()


def test_too_many_entries(
    client: TestClient, db: Database, storage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataset_service, "EXTRACT_LIMITS", ExtractLimits(max_entries=10))
    project = make_project(client)
    data = zip_entries([(f"images/train/{i}.jpg", b"x") for i in range(11)])
    assert_problem(upload_dataset(client, project["id"], data), 413, "entries")
    assert_nothing_written(db, storage)


def test_duplicate_name_is_409_and_keeps_the_first(
    client: TestClient, db: Database, storage: Path, dice_zip: bytes
) -> None:
    project = make_project(client, "demo")
    first = upload_dataset(client, project["id"], dice_zip).json()
    before = files_under(storage / "projects")
    assert_problem(upload_dataset(client, project["id"], dice_zip), 409, "exists")
    assert files_under(storage / "projects") == before
    assert client.get(f"/api/v1/datasets/{first['id']}").status_code == 200
    assert_problem(upload_dataset(client, 999999, dice_zip), 404)
    assert files_under(storage / ".uploads") == []


def test_register_from_a_folder_in_storage(
    client: TestClient, db: Database, storage: Path, dice_dir: Path
) -> None:
    project = make_project(client, "demo")
    shutil.copytree(dice_dir, storage / "incoming" / "batch1")
    response = client.post(
        "/api/v1/datasets/from-folder",
        json={"project_id": project["id"], "name": "from disk", "source_path": "incoming/batch1"},
    )
    assert response.status_code == 201, response.text
    copied = storage / response.json()["storage_path"]
    assert copied == storage / "projects/demo/datasets/from-disk/source"
    # The dataset owns its copy: changing the incoming folder does not change it.
    (storage / "incoming/batch1/annotations_detection.json").unlink()
    assert (copied / "annotations_detection.json").is_file()


@pytest.mark.parametrize("source", ["../outside", "/etc", "incoming/../../x", "missing/folder", "linked"])
def test_folders_outside_storage_or_missing_are_refused(
    client: TestClient, db: Database, storage: Path, tmp_path: Path, source: str
) -> None:
    project = make_project(client)
    (tmp_path / "outside").mkdir(exist_ok=True)
    os.symlink(tmp_path / "outside", storage / "linked")
    response = client.post(
        "/api/v1/datasets/from-folder", json={"project_id": project["id"], "name": "x", "source_path": source}
    )
    assert_problem(response, 422, "source_path")
    assert_nothing_written(db, storage)


def test_symlinks_inside_a_registered_folder_are_refused(
    client: TestClient, db: Database, storage: Path, dice_dir: Path
) -> None:
    project = make_project(client)
    shutil.copytree(dice_dir, storage / "incoming")
    os.symlink("/etc/passwd", storage / "incoming/images/train/passwd.jpg")
    response = client.post(
        "/api/v1/datasets/from-folder",
        json={"project_id": project["id"], "name": "x", "source_path": "incoming"},
    )
    assert_problem(response, 422, "symbolic link")
    assert_nothing_written(db, storage)


def test_metadata_json_must_be_an_object(
    client: TestClient, db: Database, storage: Path, tmp_path: Path
) -> None:
    project = make_project(client)
    folder = write_dice(
        tmp_path / "d", {"annotations_detection.json": task_file("object_detection", detection_images())}
    )
    (folder / "metadata.json").write_text(json.dumps([1, 2]))
    assert_problem(upload_dataset(client, project["id"], zip_folder(folder)), 422, "metadata.json")
    assert_nothing_written(db, storage)
