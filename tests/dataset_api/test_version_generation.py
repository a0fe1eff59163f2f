"""Versions that preprocess and augment, over HTTP: the images generated and stored by content, lineage
in the manifest, the preview agreeing with the freeze and writing nothing, the same request giving the
same checksum, refusals listing every bad field and writing nothing, leakage by source, and the worker's
YOLO folder holding the generated images."""

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.storage import LocalStorage
from app.models import DatasetVersion
from tests.dataset_api.conftest import assert_problem, files_under, make_dataset
from workers.datasets import materialize_version

pytestmark = pytest.mark.integration

DATASET = "projects/demo/datasets/synthetic"
# 32x32 images (15 train, 5 val): 2x2 tiles of 16x16, and each training tile once more, flipped.
REQUEST = {
    "preprocessing": {"tile": "2x2", "resize": "16x16"},
    "augmentation": {"multiplier": 2, "horizontal_flip": True, "seed": 3},
}


def versions(client: TestClient, project_id: int, path: str = "", **body: Any) -> Any:
    return client.post(f"/api/v1/projects/{project_id}/versions{path}", json=body)


def test_a_freeze_generates_the_images_it_describes(
    client: TestClient, db: Database, storage: Path, tmp_path: Path
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")
    response = versions(client, project_id, **REQUEST)
    assert response.status_code == 201, response.text
    v1 = response.json()
    assert v1["image_count"] == 15 * 4 * 2 + 5 * 4
    assert v1["split_counts"] == {"detection": {"train": 120, "val": 20}}
    manifest = json.loads((storage / v1["manifest_path"]).read_bytes())
    source = storage / DATASET / "source"
    for entry in manifest["images"]:
        lineage = entry["lineage"]
        assert entry["path"].startswith(f"generated/{entry['sha256'][:2]}/{entry['sha256']}/")
        assert hashlib.sha256((storage / DATASET / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
        original = (source / lineage["source"]["path"]).read_bytes()
        assert hashlib.sha256(original).hexdigest() == lineage["source"]["sha256"]
        assert lineage["tile"]["box"] in ([0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 16, 32], [16, 16, 32, 32])
        assert (lineage["augmentation"] is not None) == entry["file_name"].endswith("_aug1.png")
    assert {i["split"] for i in manifest["images"] if i["lineage"]["augmentation"]} == {"train"}

    # The worker's YOLO folder: every generated image linked in, one label file each.
    with db.session() as session:
        version_id = session.query(DatasetVersion).one().id
    yolo = materialize_version(db, version_id, "detection", LocalStorage(storage)).path
    assert len(list((yolo / "images/train").rglob("*.png"))) == 120
    assert len(list((yolo / "labels/val").rglob("*.txt"))) == 20


def test_the_preview_agrees_with_the_freeze_and_writes_nothing(
    client: TestClient, db: Database, storage: Path, tmp_path: Path
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")
    preview = versions(client, project_id, "/preview", **REQUEST)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (
        files_under(storage / DATASET / "generated") == []
        and files_under(storage / DATASET / "versions") == []
    )
    with db.session() as session:
        assert session.query(DatasetVersion).count() == 0
    samples = body["samples"]
    assert [s["file_name"] for s in samples] == [
        "img1_r0c0.png",
        "img1_r0c0_aug1.png",
        "img1_r0c1.png",
        "img1_r0c1_aug1.png",
    ]
    assert all(s["media_type"] == "image/png" and s["width"] == 16 for s in samples)
    assert samples[0]["annotations"]["detection"][0]["bbox"] == [2, 2, 10, 10]

    frozen = versions(client, project_id, **REQUEST).json()
    # A flip moves no object out of its tile, so even the augmented counts are exact (not estimated).
    for key in ("image_count", "annotation_count", "split_counts", "class_counts"):
        assert body[key] == frozen[key], key
    assert body["estimated"] is False
    rotated = {**REQUEST, "augmentation": {**REQUEST["augmentation"], "rotation": 10}}
    assert versions(client, project_id, "/preview", **rotated).json()["estimated"] is True
    # A plain re-split previews its counts too (nothing to render).
    resplit = {"splits": {"train": 0.5, "val": 0.5}, "split_seed": 3}
    plain = versions(client, project_id, "/preview", **resplit).json()
    frozen = versions(client, project_id, **resplit).json()
    assert plain["samples"] == [] and plain["split_counts"] == frozen["split_counts"]
    assert plain["image_count"] == frozen["image_count"] == 20


def test_the_same_request_gives_the_same_manifest_and_shares_the_files(
    client: TestClient, storage: Path, tmp_path: Path
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")
    first = versions(client, project_id, **REQUEST).json()
    files = files_under(storage / DATASET / "generated")
    second = versions(client, project_id, **REQUEST).json()
    assert (first["number"], second["number"]) == (1, 2)
    assert first["manifest_sha256"] == second["manifest_sha256"]
    assert files_under(storage / DATASET / "generated") == files
    other = versions(
        client, project_id, **{**REQUEST, "augmentation": {**REQUEST["augmentation"], "seed": 4}}
    )
    assert other.json()["manifest_sha256"] != first["manifest_sha256"]


def test_one_422_lists_every_bad_setting_and_nothing_is_written(
    client: TestClient, db: Database, storage: Path, tmp_path: Path
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")
    bad = {
        "preprocessing": {"tile": "0x2", "resize_mode": "squash", "tile_min_visibility": 2},
        "augmentation": {"multiplier": 50, "mosaic": True, "rotation": -5},
    }
    for path in ("", "/preview"):
        problem = assert_problem(versions(client, project_id, path, **bad), 422)
        assert {e["field"] for e in problem["errors"]} == {
            "preprocessing.tile",
            "preprocessing.resize_mode",
            "preprocessing.tile_min_visibility",
            "augmentation.multiplier",
            "augmentation.mosaic",
            "augmentation.rotation",
        }
    assert_problem(
        versions(client, project_id, augmentation={"rotation": 10}), 422, "multiplier of at least 2"
    )
    assert_problem(versions(client, project_id, augmentation={"multiplier": 3}), 422, "needs at least one")
    # The dataset's 32x32 images make 8x8 tiles at 4x4: smaller than a 16x16 input.
    too_small = {"preprocessing": {"tile": "4x4", "resize": "16x16"}}
    problem = assert_problem(
        versions(client, project_id, **too_small), 422, "8x8, smaller than the 16x16 input"
    )
    assert [e["field"] for e in problem["errors"]] == ["preprocessing.tile"]
    # Beside a bad field of its own, in the same 422.
    both = {**too_small, "augmentation": {"rotation": 500}}
    for path in ("", "/preview"):
        problem = assert_problem(versions(client, project_id, path, **both), 422)
        assert {e["field"] for e in problem["errors"]} == {"preprocessing.tile", "augmentation.rotation"}
    with db.session() as session:
        assert session.query(DatasetVersion).count() == 0
    assert (
        files_under(storage / DATASET / "generated") == []
        and files_under(storage / DATASET / "versions") == []
    )
    assert versions(client, project_id).json()["number"] == 1


def test_variants_of_one_source_count_as_one_image_for_leakage(client: TestClient, tmp_path: Path) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d", duplicate=True)
    leaked = versions(client, project_id, **REQUEST).json()
    assert leaked["leakage"] == [
        {
            "sha256": leaked["leakage"][0]["sha256"],
            "splits": ["train", "val"],
            "paths": ["images/train/img1.png", "images/val/img20.png"],
        }
    ]
    # A seeded re-split places by the source's content: its tiles and variants all land together.
    resplit = versions(client, project_id, splits={"train": 0.5, "val": 0.5}, **REQUEST).json()
    assert resplit["leakage"] == []


def test_a_failed_freeze_removes_the_images_it_generated(
    client: TestClient, storage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")

    def disk_full(self: LocalStorage, key: str, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalStorage, "put_bytes", disk_full)
    assert_problem(versions(client, project_id, **REQUEST), 500, "v1 failed")
    assert [p for p in (storage / DATASET / "generated").rglob("*") if p.is_file()] == []


def test_a_job_shows_offline_augmentation_beside_ultralytics_online_one(
    client: TestClient, tmp_path: Path
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")
    version = versions(client, project_id, **REQUEST).json()
    job = {
        "name": "twice flipped",
        "project": "demo",
        "task_type": "detection",
        "model_name": "yolo11n",
        "dataset_version_id": version["id"],
        "config": {"epochs": 1, "imgsz": 64, "fliplr": 0.5, "degrees": 0.0},
    }
    assert client.post("/api/v1/training/jobs", json=job).status_code == 201
    detail = client.get(f"/api/v1/projects/{project_id}/versions/{version['id']}").json()
    seen = detail["jobs"][0]["augmentation"]
    assert seen["offline"] == {"multiplier": 2, "seed": 3, "horizontal_flip": True}
    assert seen["online"]["fliplr"] == 0.5 and seen["online"]["degrees"] == 0.0 and "mosaic" in seen["online"]
    assert seen["overlaps"] == ["horizontal_flip is applied offline and online (fliplr=0.5)"]


def test_an_image_that_cannot_be_decoded_is_a_422_and_leaves_no_file(
    client: TestClient, db: Database, storage: Path, tmp_path: Path
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")
    broken = storage / DATASET / "source/images/train/img7.png"
    broken.write_bytes(broken.read_bytes()[:60])  # the header (and size) survive, the pixels do not
    body = assert_problem(versions(client, project_id, **REQUEST), 422, "is not a readable image")
    assert [e["field"] for e in body["errors"]] == ["images.images/train/img7.png"]
    with db.session() as session:
        (row,) = session.query(DatasetVersion).all()
        assert row.status == "failed" and "img7.png" in (row.failure_reason or "")
    assert [p for p in (storage / DATASET / "generated").rglob("*") if p.is_file()] == []
