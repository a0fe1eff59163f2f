"""Dataset versions over HTTP: freeze, manifest + checksums, idempotency, list/get/compare/archive,
filters, seeded stable splits, leakage, and a failed freeze."""

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.storage import LocalStorage
from app.models import DatasetVersion
from tests.dataset_api.conftest import assert_problem, files_under, make_dataset, upload_dataset, zip_folder
from tests.datasets.factories import det, image, task_file, write_dice

pytestmark = pytest.mark.integration


def create(client: TestClient, project_id: int, **body: Any) -> Any:
    return client.post(f"/api/v1/projects/{project_id}/versions", json=body)


def manifest_of(storage: Path, version: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((storage / version["manifest_path"]).read_bytes())
    return data


def test_freeze_writes_a_checksummed_manifest(client: TestClient, storage: Path, tmp_path: Path) -> None:
    project_id, dataset_id = make_dataset(client, tmp_path / "d")
    response = create(client, project_id, display_name="March release")
    assert response.status_code == 201, response.text
    v1 = response.json()
    assert (v1["number"], v1["name"], v1["status"], v1["dataset_id"]) == (1, "v1", "ready", dataset_id)
    assert v1["image_count"] == 20 and v1["annotation_count"] == 26
    assert v1["split_counts"] == {"detection": {"train": 15, "val": 5}}
    assert v1["class_counts"] == {"detection": {"cat": 16, "dog": 10}}
    assert v1["manifest_path"] == "projects/demo/datasets/synthetic/versions/v1/manifest.json"
    raw = (storage / v1["manifest_path"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == v1["manifest_sha256"]
    assert (storage / (v1["manifest_path"] + ".sha256")).read_text().split()[0] == v1["manifest_sha256"]
    manifest = json.loads(raw)
    source = storage / "projects/demo/datasets/synthetic/source"
    for entry in manifest["images"]:
        assert hashlib.sha256((source / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert {i["split"] for i in manifest["images"]} == {"train", "val"}
    assert sum(len(i["annotations"]) for i in manifest["tasks"]["detection"]["images"]) == 26
    # The number and the time are on the row: the manifest is only what the version holds.
    assert "version" not in manifest and manifest["dataset"]["id"] == dataset_id
    assert manifest["format"] == "trainyard-dataset-version/2"


def test_idempotency_key_list_get_compare_archive(client: TestClient, tmp_path: Path) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")
    first = create(client, project_id, idempotency_key="k1")
    again = create(client, project_id, idempotency_key="k1", display_name="ignored")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["number"] == 1
    v2 = create(client, project_id, idempotency_key="k2", filters={"classes": ["dog"]}).json()
    v3 = create(client, project_id).json()
    assert (v2["number"], v3["number"]) == (2, 3)
    assert v2["class_counts"] == {"detection": {"dog": 10}} and v2["image_count"] == 10

    listed = client.get(f"/api/v1/projects/{project_id}/versions").json()
    assert [v["number"] for v in listed["versions"]] == [3, 2, 1] and listed["total"] == 3

    detail = client.get(f"/api/v1/projects/{project_id}/versions/{v2['id']}").json()
    assert detail["jobs"] == [] and detail["models"] == [] and detail["filters"]["classes"] == ["dog"]

    diff = client.get(
        f"/api/v1/projects/{project_id}/versions/{v2['id']}/compare", params={"other": v3["id"]}
    )
    assert diff.status_code == 200, diff.text
    body = diff.json()
    assert (
        body["counts"]["added"] == 10 and body["counts"]["removed"] == 0 and body["counts"]["unchanged"] == 10
    )
    assert body["classes_added"] == ["cat"] and body["classes_removed"] == []

    archived = client.delete(f"/api/v1/projects/{project_id}/versions/{v3['id']}")
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    assert [
        v["number"] for v in client.get(f"/api/v1/projects/{project_id}/versions").json()["versions"]
    ] == [2, 1]
    everything = client.get(
        f"/api/v1/projects/{project_id}/versions", params={"include_archived": True}
    ).json()
    assert [v["number"] for v in everything["versions"]] == [3, 2, 1]
    # Archived is a soft delete: the row and its manifest stay readable.
    assert client.get(f"/api/v1/projects/{project_id}/versions/{v3['id']}").json()["status"] == "archived"

    assert_problem(client.get(f"/api/v1/projects/{project_id}/versions/999999"), 404)
    assert_problem(client.get("/api/v1/projects/999999/versions"), 404)


def test_filters(client: TestClient, tmp_path: Path) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")
    confident = create(client, project_id, filters={"min_confidence": 0.5}).json()
    # Image 1's only box is a 0.3 machine label: the image goes, it would teach a false negative.
    assert confident["image_count"] == 19
    verified = create(client, project_id, filters={"verified_only": True}).json()
    assert verified["image_count"] == 19
    assert_problem(create(client, project_id, filters={"classes": ["zebra"]}), 422, "unknown class")
    body = assert_problem(
        create(client, project_id, filters={"classes": ["dog"], "min_confidence": 1.0}),
        400,
        "no image matches",
    )
    assert body["errors"][0]["field"] == "filters"
    assert_problem(create(client, project_id, splits={"train": 0.5, "val": 0.2}), 422, "must be 1")
    assert_problem(create(client, project_id, preprocessing={"resize": "../x"}), 422, "resize")
    assert_problem(create(client, project_id, unknown=1), 422)


def test_no_row_or_file_for_a_refused_version(
    client: TestClient, db: Database, storage: Path, tmp_path: Path
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")
    assert create(client, project_id, filters={"classes": ["dog"], "min_confidence": 1.0}).status_code == 400
    with db.session() as session:
        assert session.query(DatasetVersion).count() == 0
    assert files_under(storage / "projects/demo/datasets/synthetic/versions") == []
    # The refused request did not consume a number either.
    assert create(client, project_id).json()["number"] == 1


def test_seeded_splits_are_stable_across_versions(client: TestClient, tmp_path: Path, storage: Path) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d", n=40)
    splits = {"train": 0.7, "val": 0.2, "test": 0.1}
    a = create(client, project_id, splits=splits, split_seed=7).json()
    b = create(client, project_id, splits=splits, split_seed=7, filters={"classes": ["cat"]}).json()
    c = create(client, project_id, splits=splits, split_seed=8).json()
    split_a = {i["path"]: i["split"] for i in manifest_of(storage, a)["images"]}
    split_b = {i["path"]: i["split"] for i in manifest_of(storage, b)["images"]}
    split_c = {i["path"]: i["split"] for i in manifest_of(storage, c)["images"]}
    assert all(split_a[p] == s for p, s in split_b.items())  # same seed: same split for every shared image
    assert split_a != split_c  # another seed: another assignment
    assert set(split_a.values()) == {"train", "val", "test"}
    counts = a["split_counts"]["detection"]
    assert counts["train"] > counts["val"] > 0
    # Re-split images keep their source folder in their name, so two a.png cannot collide.
    assert {i["file_name"].split("/")[0] for i in manifest_of(storage, a)["images"]} == {"train", "val"}


def test_leakage_is_reported(client: TestClient, tmp_path: Path) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d", duplicate=True)
    kept = create(client, project_id).json()
    assert len(kept["leakage"]) == 1
    leak = kept["leakage"][0]
    assert leak["splits"] == ["train", "val"] and leak["paths"] == [
        "images/train/img1.png",
        "images/val/img20.png",
    ]
    # A seeded re-split assigns by content, so identical bytes always land together.
    resplit = create(client, project_id, splits={"train": 0.5, "val": 0.5}).json()
    assert resplit["leakage"] == []


def test_dataset_choice(client: TestClient, tmp_path: Path) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")
    other = write_dice(
        tmp_path / "o",
        {
            "annotations_detection.json": task_file(
                "object_detection", [image(1, "z.jpg", "train", [det(1, 1, 0, [1, 1, 2, 2])])]
            )
        },
    )
    second = upload_dataset(client, project_id, zip_folder(other), name="second").json()
    assert_problem(create(client, project_id), 422, "several datasets")
    chosen = create(client, project_id, dataset_id=second["id"]).json()
    assert chosen["dataset_id"] == second["id"] and chosen["image_count"] == 1
    assert_problem(create(client, project_id, dataset_id=424242), 422, "dataset_id")


def test_a_failed_freeze_is_recorded_and_leaves_no_manifest(
    client: TestClient, storage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id, _ = make_dataset(client, tmp_path / "d")

    def disk_full(self: LocalStorage, key: str, data: bytes) -> int:
        if key.endswith(".sha256"):
            raise OSError(28, "No space left on device")
        return original(self, key, data)

    original = LocalStorage.put_bytes
    monkeypatch.setattr(LocalStorage, "put_bytes", disk_full)
    response = create(client, project_id, idempotency_key="k")
    assert_problem(response, 500, "v1 failed")
    monkeypatch.setattr(LocalStorage, "put_bytes", original)
    failed = create(client, project_id, idempotency_key="k").json()
    assert failed["status"] == "failed" and "No space left" in failed["failure_reason"]
    assert failed["manifest_path"] is None
    assert files_under(storage / "projects/demo/datasets/synthetic/versions/v1") == []
    assert create(client, project_id).json()["number"] == 2
