"""A fleet whose hosts share no disk: the API with data dir A, GPU host 1 with B, GPU host 2 with C, one
PostgreSQL, one Redis and an S3 server (moto). Everything a job needs crosses through the bucket:

a DICE ZIP uploaded to the API and a version frozen there; host 1 downloads the version, converts it and
stores the conversion back, trains, and is SIGKILLed mid-run; host 2 fetches the stored conversion (no
second conversion), resumes from the checkpoint host 1 left in the bucket and completes; host 2 serves the
model; a second job on the same version on host 2 downloads nothing. Neither GPU host keeps any of it
outside its cache."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_postgres
from tests.factories import dice_zip
from tests.models_inference.test_inference_e2e import jpeg
from tests.storage.conftest import s3_endpoint, s3_env  # noqa: F401  (the S3 fixtures)
from tests.support.fleet import (
    LEASE,
    Fleet,
    assert_contiguous,
    epoch_done,
    progress_epochs,
    running_fleet,
    running_worker,
    statuses,
)
from tests.support.stack import tail, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
GPU_HOSTS = ("gpu-host-1", "gpu-host-2")
# What a worker keeps in its data dir by design: its caches (datasets, base weights, served models),
# Ultralytics' settings, its secret key file.
OWN = {"cache", "weights-cache", "model-cache", "ultralytics", "secret_key"}


@pytest.fixture
def fleet(
    tmp_path: Path,
    s3_env: str,  # noqa: F811
    s3_endpoint: str,  # noqa: F811
    stack_redis_url: str,
) -> Iterator[Fleet]:
    """The API and the scheduler on the API host; the tests start the GPU hosts' workers."""
    with fresh_postgres("hosts16") as database_url:
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": stack_redis_url,
            "TRAINYARD_STORAGE": "s3",
            "TRAINYARD_S3_BUCKET": s3_env,
            "TRAINYARD_S3_ENDPOINT_URL": s3_endpoint,
            "TRAINYARD_DATA_DIR": str(tmp_path / "api-host"),
            **LEASE,
        }
        with running_fleet(tmp_path, env) as fleet:
            yield fleet


def host(fleet: Fleet, name: str) -> dict[str, str]:
    return {"TRAINYARD_DATA_DIR": str(fleet.root / name), "TRAINYARD_HOST": name}


def strays(data_dir: Path) -> list[Path]:
    """Files of a host's data dir outside what it keeps by design."""
    return [p for p in data_dir.rglob("*") if p.is_file() and p.relative_to(data_dir).parts[0] not in OWN]


def notes(events: list[dict[str, Any]], attempt: int) -> list[str]:
    """What the worker said about the dataset in an attempt (its own log lines, not the trainer's)."""
    attempts = [
        e["data"]["attempt"] for e in events if e["type"] == "status" and e["data"]["status"] == "running"
    ]
    start = [e["seq"] for e in events if e["type"] == "status" and e["data"]["status"] == "running"]
    begin = start[attempts.index(attempt)]
    end = start[attempts.index(attempt) + 1] if attempt < len(attempts) else float("inf")
    return [
        e["data"]["message"]
        for e in events
        if e["type"] == "log" and begin < e["seq"] < end and e["data"]["message"].startswith("dataset ")
    ]


def test_a_job_crosses_hosts_through_storage_alone(fleet: Fleet) -> None:
    http = httpx.Client(base_url=fleet.url, headers=fleet.headers, timeout=60)
    project = http.post("/api/v1/projects", json={"name": "Fleet"}).json()
    uploaded = http.post(
        "/api/v1/datasets",
        data={"project_id": str(project["id"]), "name": "shapes"},
        # Enough images that an epoch takes a few seconds: room to kill host 1 mid-run.
        files={"file": ("shapes.zip", dice_zip(train=48, val=8, size=96), "application/zip")},
    )
    assert uploaded.status_code == 201, uploaded.text
    version = http.post(f"/api/v1/projects/{project['id']}/versions", json={"idempotency_key": "v1"}).json()
    assert version["status"] == "ready", version

    def submit(name: str, epochs: int) -> int:
        body = {
            "name": name,
            "project": "Fleet",
            "task_type": "detection",
            "model_name": "yolo11n",
            "dataset_version_id": version["id"],
            "config": {"epochs": epochs, "imgsz": 96, "batch": 8, "workers": 0, "plots": False},
        }
        response = http.post("/api/v1/training/jobs", json=body)
        assert response.status_code == 201, response.text
        job_id: int = response.json()["id"]
        return job_id

    fleet.start_worker("gpu-host-1", host(fleet, "gpu-host-1"))
    job = submit("crosses hosts", epochs=4)
    early = fleet.follow(job, until=epoch_done(1))
    assert running_worker(early) == "gpu-host-1"
    fleet.kill_worker("gpu-host-1")  # during epoch 2: its checkpoint of epoch 1 is in the bucket
    fleet.start_worker("gpu-host-2", host(fleet, "gpu-host-2"))
    events = early + fleet.follow(job, after=early[-1]["seq"], timeout=300)

    assert_contiguous(events)
    assert statuses(events) == ["queued", "running", "queued", "running", "completed"], tail(
        fleet.root / "gpu-host-2.log"
    )()
    assert running_worker(events) == "gpu-host-2"
    attempts = http.get(f"/api/v1/training/jobs/{job}").json()["attempts"]
    assert [(a["attempt"], a["host"]) for a in attempts] == [(1, "gpu-host-1"), (2, "gpu-host-2")]
    assert progress_epochs(events) == [1, 2, 3, 4], "an epoch was trained twice or skipped"
    resumed = [e for e in events if e["type"] == "log" and "trainer started" in e["data"]["message"]]
    assert resumed[-1]["data"]["metadata"]["resumed_from"], "host 2 did not resume from host 1's checkpoint"
    # Host 1 converted the version and stored the conversion; host 2 fetched it and converted nothing.
    assert [n.split(":")[0] for n in notes(events, 1)] == ["dataset downloaded and converted"]
    assert [n.split(":")[0] for n in notes(events, 2)] == ["dataset downloaded"]

    # The model trained across both hosts is validated and served by host 2, the only one left.
    def ready() -> dict[str, Any] | None:
        items = http.get("/api/v1/models", params={"project": "Fleet"}).json()["items"]
        model = next((m for m in items if m["lineage"]["job_id"] == job), None)
        assert model is None or model["status"] != "failed", model
        return model if model is not None and model["status"] == "ready" else None

    model = wait_until(
        ready, "the model never became ready", tail(fleet.root / "gpu-host-2.log"), timeout=120
    )
    files = [("files", ("a.jpg", jpeg((96, 96)), "application/octet-stream"))]
    served = http.post("/api/v1/inference", files=files, data={"model_id": str(model["id"]), "conf": "0"})
    assert served.status_code == 200, served.text
    assert served.json()["worker"] == "gpu-host-2"

    # A second job on the same version finds it in host 2's cache.
    again = submit("same data", epochs=1)
    second = fleet.follow(again, timeout=300)
    assert statuses(second)[-1] == "completed"
    assert notes(second, 1) == ["dataset read from this host's cache: nothing downloaded"]

    # What host 1 and host 2 hold of it, they hold in their caches. Host 1 was killed mid-attempt: back
    # up, it sweeps the scratch folder that attempt left.
    fleet.start_worker("gpu-host-1", host(fleet, "gpu-host-1"))
    for name in GPU_HOSTS:
        root = fleet.root / name
        wait_until(
            lambda r=root: not strays(r),
            f"{name} keeps files outside its caches",
            lambda r=root: str(strays(r)),
        )
        assert not strays(root)
    entries = list((fleet.root / "gpu-host-2" / "cache" / "datasets").glob("version-*"))
    assert any((entry / "files" / "data.yaml").is_file() for entry in entries), entries
