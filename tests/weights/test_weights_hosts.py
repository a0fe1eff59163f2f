"""Two GPU hosts that share no disk: two CPU workers with data dirs of their own, the API with a third,
one PostgreSQL, one Redis and an S3 server (moto). Base weights imported through the API live in the
bucket; each worker fetches them once into its own cache and fine-tunes from them."""

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_postgres
from tests.factories import make_yolo_dataset
from tests.storage.conftest import s3_endpoint, s3_env  # noqa: F401  (the S3 fixtures)
from tests.support.stack import TRAINYARD, auth, create_key, free_port, running, tail, wait_for, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HOSTS = ("api-host", "gpu-host-1", "gpu-host-2")


@pytest.fixture
def hosts(
    tmp_path: Path,
    s3_env: str,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    stack_redis_url: str,
) -> Iterator[dict[str, dict[str, str]]]:
    """Each host's environment: the same services and bucket, a data dir of its own."""
    with fresh_postgres("hosts") as database_url:
        shared = {
            "DATABASE_URL": database_url,
            "REDIS_URL": stack_redis_url,
            "TRAINYARD_STORAGE": "s3",
            "TRAINYARD_S3_BUCKET": s3_env,
            "TRAINYARD_S3_ENDPOINT_URL": s3_endpoint,
            "TRAINYARD_IMPORT_ROOTS": str(tmp_path / "datasets"),
        }
        yield {host: {**shared, "TRAINYARD_DATA_DIR": str(tmp_path / host)} for host in HOSTS}


def test_each_host_fetches_base_weights_through_s3_once_and_fine_tunes_from_them(
    hosts: dict[str, dict[str, str]], tmp_path: Path, yolo11n_pt: Path
) -> None:
    shapes = make_yolo_dataset(tmp_path / "datasets" / "shapes", train=8, val=2, size=64)
    weights = yolo11n_pt.read_bytes()
    sha256 = hashlib.sha256(weights).hexdigest()
    key, port = create_key(hosts["api-host"]), free_port()
    api_log = tmp_path / "api.log"
    with (
        running([*TRAINYARD, "api", "--port", str(port)], hosts["api-host"], api_log),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth(key), timeout=60) as http,
    ):
        wait_for(f"http://127.0.0.1:{port}/health", api_log)
        imported = http.post(
            "/api/v1/weights", files={"file": ("yolo11n.pt", weights)}, data={"name": "yolo11n"}
        )
        assert imported.status_code == 201, imported.text
        assert imported.json()["sha256"] == sha256
        record = f"/api/v1/weights/{imported.json()['id']}"
        for host in HOSTS[1:]:
            log = tmp_path / f"{host}.log"
            command = [*TRAINYARD, "worker", "--device", "cpu", "--name", host]
            with running(command, hosts[host], log):  # one host at a time: this job can only run here
                # A worker checks that imported weights load before any job may start from them.
                wait_until(lambda: http.get(record).json()["status"] == "ready", "never ready", tail(log))
                model = fine_tune(http, shapes, f"tuned on {host}", tail(log))
                assert model["lineage"]["base_weights_sha256"] == sha256
                assert model["lineage"]["config"]["pretrained"] is True
            cached = tmp_path / host / "weights-cache" / f"{sha256}.pt"
            assert cached.read_bytes() == weights, f"{host} did not fetch the base weights into its cache"
    # The bytes live in the bucket: no host keeps a copy outside its worker cache.
    for host in HOSTS:
        stray = [p for p in (tmp_path / host).rglob("*.pt") if "weights-cache" not in p.parts]
        assert not [p for p in stray if p.read_bytes() == weights], stray


def fine_tune(http: httpx.Client, dataset: Path, name: str, logs: Any) -> dict[str, Any]:
    """Submit a 1-epoch job from the base weights; its registered model once the worker made it ready."""
    body = {
        "name": name,
        "project": "fleet",
        "task_type": "detection",
        "model_name": "yolo11n",
        "weights": "yolo11n",
        "dataset_path": str(dataset),
        "config": {"epochs": 1, "imgsz": 64, "batch": 8, "workers": 0, "plots": False},
    }
    submitted = http.post("/api/v1/training/jobs", json=body)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]

    def ready() -> dict[str, Any] | None:
        job = http.get(f"/api/v1/training/jobs/{job_id}").json()
        assert job["status"] not in {"failed", "cancelled", "stopped"}, job
        items = http.get("/api/v1/models", params={"project": "fleet"}).json()["items"]
        model = next((m for m in items if m["lineage"]["job_id"] == job_id), None)
        assert model is None or model["status"] != "failed", model
        return model if model is not None and model["status"] == "ready" else None

    model: dict[str, Any] = wait_until(ready, f"{name} never gave a ready model", logs, timeout=300)
    return model
