"""From a DICE ZIP to a trained model, for real: `trainyard api` + `trainyard worker` processes on
PostgreSQL and Redis (db 12). The dataset is registered, a version frozen, a 1-epoch job trained from
the version; the worker converts the version to YOLO itself, and the job, the version and the model
point at each other."""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_postgres
from tests.factories import dice_zip
from tests.support.stack import api_and_worker, auth

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_redis_url: str) -> Iterator[tuple[str, Path, str]]:
    root = tmp_path_factory.mktemp("datasets-e2e")
    with fresh_postgres("dse2e") as database_url:
        env = {
            "TRAINYARD_DATA_DIR": str(root / "data"),
            "DATABASE_URL": database_url,
            "REDIS_URL": stack_redis_url,
        }
        with api_and_worker(root, env, f"dse2e-{root.name}") as (url, key):
            yield url, root / "data" / "storage", key


def wait_terminal(http: httpx.Client, job_id: int, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/api/v1/training/jobs/{job_id}").json()
        if job["status"] in {"completed", "failed", "stopped", "cancelled"}:
            return job
        time.sleep(1)
    raise TimeoutError(f"job {job_id} did not finish")


def test_train_one_epoch_from_a_frozen_version(stack: tuple[str, Path, str]) -> None:
    url, storage, key = stack
    with httpx.Client(base_url=url, timeout=60, headers=auth(key)) as http:
        project = http.post("/api/v1/projects", json={"name": "Shapes"}).json()
        dataset = http.post(
            "/api/v1/datasets",
            data={"project_id": str(project["id"]), "name": "shapes"},
            files={"file": ("shapes.zip", dice_zip(), "application/zip")},
        )
        assert dataset.status_code == 201, dataset.text
        version = http.post(
            f"/api/v1/projects/{project['id']}/versions", json={"idempotency_key": "e2e"}
        ).json()
        assert version["status"] == "ready" and version["split_counts"] == {
            "detection": {"train": 12, "val": 4}
        }

        submitted = http.post(
            "/api/v1/training/jobs",
            json={
                "name": "from v1",
                "project": "Shapes",
                "task_type": "detection",
                "model_name": "yolo11n",
                "dataset_version_id": version["id"],
                "config": {"epochs": 1, "imgsz": 64, "batch": 4, "workers": 0, "plots": False},
            },
        )
        assert submitted.status_code == 201, submitted.text
        version_url = f"/api/v1/projects/{project['id']}/versions/{version['id']}"
        job = wait_terminal(http, submitted.json()["id"])
        assert job["status"] == "completed", job
        assert job["dataset_version_id"] == version["id"]
        assert job["dataset_manifest_sha256"] == version["manifest_sha256"]

        detail = http.get(version_url).json()
        assert detail["status"] == "ready"  # back from `training` once the job ended
        assert [j["id"] for j in detail["jobs"]] == [job["id"]]
        assert detail["models"] == [{"job_id": job["id"], "weights": job["checkpoints"]["best"]}]
        assert (storage / job["checkpoints"]["best"]).is_file()
        # The worker materialized the version's YOLO layout in the version's folder.
        yolo = (
            storage
            / f"projects/shapes/datasets/shapes/versions/v1/yolo/detection-{version['manifest_sha256']}-c1"
        )
        assert (yolo / "data.yaml").is_file() and len(list((yolo / "labels" / "train").iterdir())) == 12
        # Local storage: the worker read it in place, with no copy in a dataset cache.
        assert not (storage.parent / "cache").exists()
        logs = [e["message"] for e in http.get(f"/api/v1/training/jobs/{job['id']}/logs").json()["logs"]]
        assert not [m for m in logs if m.startswith("dataset ")], logs


def test_train_from_a_tiled_and_augmented_version(stack: tuple[str, Path, str]) -> None:
    """2x2 tiles and 2x augmentation: the preview, the manifest and what the worker trained on agree."""
    url, storage, key = stack
    request = {
        "preprocessing": {"tile": "2x2"},
        "augmentation": {"multiplier": 2, "horizontal_flip": True, "rotation": 10, "seed": 1},
    }
    with httpx.Client(base_url=url, timeout=60, headers=auth(key)) as http:
        project = http.post("/api/v1/projects", json={"name": "Tiles"}).json()
        dataset = http.post(
            "/api/v1/datasets",
            data={"project_id": str(project["id"]), "name": "tiles"},
            files={"file": ("tiles.zip", dice_zip(), "application/zip")},
        )
        assert dataset.status_code == 201, dataset.text
        versions = f"/api/v1/projects/{project['id']}/versions"
        preview = http.post(f"{versions}/preview", json=request).json()
        version = http.post(versions, json=request).json()
        # 12 training images -> 4 tiles x 2; 4 val images -> 4 tiles.
        counts = {"detection": {"train": 96, "val": 16}}
        assert version["status"] == "ready" and version["split_counts"] == preview["split_counts"] == counts
        assert preview["image_count"] == version["image_count"] == 112

        submitted = http.post(
            "/api/v1/training/jobs",
            json={
                "name": "from tiles",
                "project": "Tiles",
                "task_type": "detection",
                "model_name": "yolo11n",
                "dataset_version_id": version["id"],
                "config": {"epochs": 1, "imgsz": 64, "batch": 8, "workers": 0, "plots": False},
            },
        )
        assert submitted.status_code == 201, submitted.text
        job = wait_terminal(http, submitted.json()["id"])
        assert job["status"] == "completed", job
        yolo = storage / job["dataset_path"]  # a storage key
        converted = json.loads((yolo / ".trainyard-convert.json").read_text())
        assert converted["images"] == 112
        assert len(list((yolo / "images/train").iterdir())) == 96
        assert len(list((yolo / "labels/val").iterdir())) == 16
        assert all(p.stat().st_size > 0 for p in (yolo / "images/train").iterdir())
