"""Dataset folders that only the bucket has (issue 16). With S3 storage a user syncs a YOLO folder
straight into the bucket (`aws s3 sync shapes s3://bucket/datasets/shapes`) and names it by its key: the
API checks it through the bucket's listing, with the rules and the words of a local folder, and a worker
downloads it into its cache once. A folder in an import root names a folder of the workers' hosts."""

# ruff: noqa: F811  (the tests take the API client and dataset fixtures imported from tests/training)

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.storage import S3Storage
from tests.conftest import bearer_headers, clear_caches, make_api_key
from tests.training.conftest import client, yolo_dataset  # noqa: F401  (the API and a dataset)
from tests.training.test_api_jobs import job_body
from workers.dataset_cache import FolderCache
from workers.datasets import DatasetMissing, materialize_folder

pytestmark = pytest.mark.integration
JOBS = "/api/v1/training/jobs"


@pytest.fixture
def bucket(env: Path, s3: S3Storage, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    """The API's storage is the test's bucket; its own storage folder stays empty."""
    monkeypatch.setenv("TRAINYARD_STORAGE", "s3")
    monkeypatch.setenv("TRAINYARD_S3_BUCKET", s3.bucket)
    monkeypatch.setenv("TRAINYARD_S3_ENDPOINT_URL", s3_endpoint)
    clear_caches()
    return s3


def sync(storage: S3Storage, folder: Path, key: str) -> None:
    """What `aws s3 sync <folder> s3://bucket/<key>` leaves: one object per file, no folder objects."""
    for path in folder.rglob("*"):
        if path.is_file():
            storage.put_file(f"{key}/{path.relative_to(folder).as_posix()}", path)


def bucket_files(storage: S3Storage, key: str) -> dict[str, bytes]:
    """The files of a bucket folder (not its empty folder objects) by their path in it."""
    listing = [item.key for item in storage.listing(key) if not item.key.endswith("/")]
    return {k[len(key) + 1 :]: storage.get_bytes(k) for k in listing}


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def refusal(response: Any) -> str:
    """The reason of a 422 naming `dataset_path`."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["field"] == "dataset_path"
    reason: str = error["reason"]
    return reason


# Submission ------------------------------------------------------------------------------------------


def test_a_folder_synced_into_the_bucket_is_accepted_by_its_key(
    bucket: S3Storage, client: TestClient, env: Path, yolo_dataset: Path
) -> None:
    sync(bucket, yolo_dataset, "datasets/shapes")
    preflight = client.post(
        "/api/v1/training/preflight", json=job_body(yolo_dataset, dataset_path="datasets/shapes")
    )
    assert preflight.status_code == 200 and preflight.json()["ok"], preflight.text
    assert preflight.json()["dataset"]["classes"] == ["red", "blue"]
    response = client.post(JOBS, json=job_body(yolo_dataset, dataset_path="datasets/shapes"))
    assert response.status_code == 201, response.text
    assert response.json()["dataset_path"] == "datasets/shapes"
    assert not (env / "data" / "storage" / "datasets").exists()  # the API's host never had it


def test_a_classification_folder_in_the_bucket_is_accepted_with_its_classes(
    bucket: S3Storage, client: TestClient, yolo_dataset: Path
) -> None:
    for split, label in (("train", "cat"), ("train", "dog"), ("val", "cat"), ("val", "dog")):
        bucket.put_file(f"datasets/pets/{split}/{label}/0.jpg", yolo_dataset / "images" / "train" / "0.jpg")
    body = job_body(yolo_dataset, task_type="classification", dataset_path="datasets/pets")
    preflight = client.post("/api/v1/training/preflight", json=body)
    assert preflight.json()["dataset"]["classes"] == ["cat", "dog"], preflight.text
    assert client.post(JOBS, json=body).status_code == 201


def drop(prefix: str) -> Callable[[S3Storage], None]:
    return lambda storage: storage.delete_prefix(f"datasets/shapes/{prefix}")


def data_yaml(**fields: object) -> Callable[[S3Storage], None]:
    def write(storage: S3Storage) -> None:
        data = yaml.safe_load(storage.get_bytes("datasets/shapes/data.yaml")) | fields
        storage.put_bytes("datasets/shapes/data.yaml", yaml.safe_dump(data).encode())

    return write


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (lambda s: s.delete("datasets/shapes/data.yaml"), "'datasets/shapes' has no data.yaml"),
        (
            drop("images/val"),
            "data.yaml val: 'images/val' does not exist under path: '.' (read from the data.yaml's folder)",
        ),
        (data_yaml(val="images/valid"), "data.yaml val: 'images/valid' does not exist under path: '.'"),
        (data_yaml(names=[]), "data.yaml names must be a non-empty list or id -> name mapping"),
        (
            data_yaml(path="../other"),
            "data.yaml path: '../other' leads outside the folders this dataset may read",
        ),
        (data_yaml(path="/etc"), "data.yaml path: '/etc' leads outside the folders this dataset may read"),
        (drop(""), "does not exist; a relative path starts at the server's storage root"),
    ],
    ids=["no data.yaml", "split gone", "split misnamed", "no names", "path up", "path absolute", "no folder"],
)
def test_a_broken_bucket_folder_is_refused_with_the_words_of_a_local_one(
    bucket: S3Storage,
    client: TestClient,
    yolo_dataset: Path,
    breakage: Callable[[S3Storage], None],
    reason: str,
) -> None:
    sync(bucket, yolo_dataset, "datasets/shapes")
    other = "datasets/other"  # a sibling a data.yaml may not reach: workers download only the folder
    sync(bucket, yolo_dataset, other)
    breakage(bucket)
    body = job_body(yolo_dataset, dataset_path="datasets/shapes")
    assert reason in refusal(client.post(JOBS, json=body))
    preflight = client.post("/api/v1/training/preflight", json=body).json()
    assert not preflight["ok"] and reason in preflight["problems"][0]["reason"]
    assert client.get(JOBS).json()["total"] == 0


def test_a_classification_folder_without_train_classes_is_refused(
    bucket: S3Storage, client: TestClient, yolo_dataset: Path
) -> None:
    bucket.put_file("datasets/pets/val/cat/0.jpg", yolo_dataset / "images" / "train" / "0.jpg")
    bucket.put_file("datasets/pets/train/0.jpg", yolo_dataset / "images" / "train" / "0.jpg")  # no class
    body = job_body(yolo_dataset, task_type="classification", dataset_path="datasets/pets")
    reason = refusal(client.post(JOBS, json=body))
    assert reason == "'datasets/pets' has no train/<class>/ folders (classification layout)"


def test_another_projects_bucket_folder_looks_exactly_like_a_missing_one(
    bucket: S3Storage, client: TestClient, db: Database, yolo_dataset: Path
) -> None:
    member = bearer_headers(make_api_key(db, "member", ["demo"]))
    make_api_key(db, "member", ["alpha"])  # the project exists
    sync(bucket, yolo_dataset, "projects/alpha/datasets/shapes")
    sync(bucket, yolo_dataset, "projects/demo/datasets/shapes")
    assert (
        client.post(
            JOBS, json=job_body(yolo_dataset, dataset_path="projects/demo/datasets/shapes"), headers=member
        ).status_code
        == 201
    )

    def answer() -> tuple[int, list[dict[str, str]], str]:
        body = job_body(yolo_dataset, name="probe", dataset_path="projects/alpha/datasets/shapes")
        response = client.post(JOBS, json=body, headers=member)
        problem = response.json()
        return response.status_code, problem["errors"], problem["detail"]

    there = answer()
    bucket.delete_prefix("projects/alpha/datasets/shapes")
    assert there == answer()
    assert there[:2] == (
        404,
        [{"field": "dataset_path", "reason": "folder 'projects/alpha/datasets/shapes' does not exist"}],
    )


def test_a_folder_in_an_import_root_is_the_workers_hosts_to_check(
    bucket: S3Storage, client: TestClient, tmp_path: Path, yolo_dataset: Path
) -> None:
    # The pytest temp folder is an import root (tests/conftest.py `env`); the API's host lacks this folder.
    on_the_gpu_hosts = str(tmp_path / "gpu-hosts" / "shapes")
    body = job_body(yolo_dataset, dataset_path=on_the_gpu_hosts)
    preflight = client.post("/api/v1/training/preflight", json=body).json()
    assert preflight["ok"] and preflight["dataset"]["classes"] == []
    assert any("not on the API's host" in w for w in preflight["warnings"]), preflight["warnings"]
    response = client.post(JOBS, json=body)
    assert response.status_code == 201, response.text
    assert response.json()["dataset_path"] == on_the_gpu_hosts
    # Still only under an import root; and a folder the API's host has is checked in full.
    assert "outside the storage root and the import roots" in refusal(
        client.post(JOBS, json=job_body(yolo_dataset, name="b", dataset_path="/opt/shapes"))
    )
    broken = tmp_path / "here"
    shutil.copytree(yolo_dataset, broken)
    (broken / "data.yaml").unlink()
    assert refusal(client.post(JOBS, json=job_body(broken, name="c"))).endswith("has no data.yaml")


def test_with_local_storage_a_missing_import_root_folder_is_refused(
    client: TestClient, tmp_path: Path, yolo_dataset: Path
) -> None:
    body = job_body(yolo_dataset, dataset_path=str(tmp_path / "gpu-hosts" / "shapes"))
    assert "does not exist" in refusal(client.post(JOBS, json=body))


# The worker's side --------------------------------------------------------------------------------


def test_a_bucket_folder_is_downloaded_once_and_a_changed_object_makes_a_new_entry(
    s3: S3Storage, tmp_path: Path, yolo_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync(s3, yolo_dataset, "datasets/shapes")
    downloads: list[str] = []
    get_file = s3.get_file

    def counted(key: str, target: Path) -> Path:
        downloads.append(key)
        return get_file(key, target)

    monkeypatch.setattr(s3, "get_file", counted)
    cache = FolderCache(tmp_path / "cache", 2**30)
    first = materialize_folder("datasets/shapes", s3, cache)
    first.release()
    assert first.origin == "storage" and first.files == len(downloads) == len(local_files(yolo_dataset))
    assert local_files(first.path) == bucket_files(s3, "datasets/shapes") == local_files(yolo_dataset)

    downloads.clear()
    again = materialize_folder("datasets/shapes", s3, cache)
    again.release()
    assert (again.origin, again.files, downloads, again.path) == ("cache", 0, [], first.path)

    s3.put_bytes("datasets/shapes/labels/train/0.txt", b"1 0.5 0.5 0.25 0.25\n")
    changed = materialize_folder("datasets/shapes", s3, cache)
    changed.release()
    assert changed.origin == "storage" and changed.path != first.path  # keyed by the listing's hash
    assert local_files(changed.path) == bucket_files(s3, "datasets/shapes")
    assert (changed.path / "labels" / "train" / "0.txt").read_bytes() == b"1 0.5 0.5 0.25 0.25\n"


def test_a_bucket_folder_that_is_gone_is_a_missing_dataset(s3: S3Storage, tmp_path: Path) -> None:
    with pytest.raises(DatasetMissing, match="storage has no folder 'datasets/gone'"):
        materialize_folder("datasets/gone", s3, FolderCache(tmp_path / "cache", 2**20))


def test_empty_folder_objects_of_a_console_are_folders_not_files(
    bucket: S3Storage, client: TestClient, tmp_path: Path, yolo_dataset: Path
) -> None:
    bucket.put_bytes("datasets/pets/", b"")  # "Create folder" in the S3 console, for each folder
    for split, label in (("train", "cat"), ("train", "dog"), ("val", "cat"), ("val", "dog")):
        bucket.put_bytes(f"datasets/pets/{split}/", b"")
        bucket.put_bytes(f"datasets/pets/{split}/{label}/", b"")
        bucket.put_file(f"datasets/pets/{split}/{label}/0.jpg", yolo_dataset / "images" / "train" / "0.jpg")
    bucket.put_bytes("datasets/pets/val/bird/", b"")  # a class with no image yet
    body = job_body(yolo_dataset, task_type="classification", dataset_path="datasets/pets")
    assert client.post(JOBS, json=body).status_code == 201
    pinned = materialize_folder("datasets/pets", bucket, FolderCache(tmp_path / "cache", 2**20))
    pinned.release()
    assert sorted(p.relative_to(pinned.path).as_posix() for p in pinned.path.rglob("*") if p.is_dir()) == [
        "train",
        "train/cat",
        "train/dog",
        "val",
        "val/bird",
        "val/cat",
        "val/dog",
    ]
    assert local_files(pinned.path) == bucket_files(bucket, "datasets/pets")
