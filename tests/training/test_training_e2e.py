"""A newcomer's path, for real: API + worker processes, Celery on Redis, Ultralytics on tiny data.

Two stacks: `trainyard serve` with embedded defaults (SQLite file, bundled Redis), and `trainyard api`
+ `trainyard worker` on PostgreSQL and the machine's Redis. Each trains a 2-epoch detector, is followed
over SSE (one client throughout, one that disconnects and resumes with Last-Event-ID), and the
weights it produced are loaded and used by Ultralytics.
"""

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from httpx_sse import connect_sse

from app.cli.client import ApiClient
from tests.conftest import fresh_postgres
from tests.factories import make_yolo_dataset
from tests.support.stack import (
    TRAINYARD,
    api_and_worker,
    auth,
    embedded_serve,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("e2e") / "shapes", train=16, val=4, size=128)


@pytest.fixture(scope="module")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """`trainyard serve`: nothing configured but the data directory (and where datasets may come from).
    The first admin key is the one `serve` prints on its first start."""
    data = tmp_path_factory.mktemp("embedded") / "data"
    with embedded_serve(data, tmp_path_factory.getbasetemp()) as (url, key, serve):
        yield url, data / "storage", key
        serve.terminate()  # what Ctrl-C does: the supervisor stops its children and the bundled Redis
        assert serve.wait(60) == 0, (data.parent / "serve.log").read_text()[-3000:]
    assert not (data / "redis" / "redis.sock").exists() or not _answers(data / "redis" / "redis.sock")


def _answers(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path)).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def production_stack(
    tmp_path_factory: pytest.TempPathFactory, stack_redis_url: str
) -> Iterator[tuple[str, Path, str]]:
    """`trainyard api` + `trainyard worker --device cpu` on PostgreSQL and a Redis of its own."""
    root = tmp_path_factory.mktemp("production")
    with fresh_postgres("e2e") as database_url:
        env = {
            "TRAINYARD_DATA_DIR": str(root / "data"),
            "DATABASE_URL": database_url,
            "REDIS_URL": stack_redis_url,
            "TRAINYARD_IMPORT_ROOTS": str(tmp_path_factory.getbasetemp()),
            "TRAINYARD_WARM_TRAINER": "true",  # as a worker runs by default: jobs go to its spare trainer
        }
        with api_and_worker(root, env, f"e2e-{root.name}") as (url, key):
            yield url, root / "data" / "storage", key


def follow(
    url: str, key: str, job_id: int, after: int = 0, stop_after: int | None = None
) -> list[dict[str, Any]]:
    """Read the SSE stream (from `after`) until it closes, or until `stop_after` events, then hang up."""
    events: list[dict[str, Any]] = []
    headers = {"Last-Event-ID": str(after)} if after else {}
    headers.update(auth(key))
    with (
        httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=120)) as http,
        connect_sse(http, "GET", f"/api/v1/training/jobs/{job_id}/events", headers=headers) as source,
    ):
        for sse in source.iter_sse():
            if not sse.data:  # keep-alive ping
                continue
            event = json.loads(sse.data)
            assert sse.id == str(event["seq"]) and sse.event == event["type"]
            events.append(event)
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


def assert_training_story(events: list[dict[str, Any]], epochs: int) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "seq has a gap or repeat"
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "running", "completed"]
    assert events[-1]["type"] == "status", "the stream must close right after the terminal event"
    progress = [e["data"] for e in events if e["type"] == "progress"]
    assert progress[0]["phase"] == "setup" and all(p["epochs"] == epochs for p in progress)
    ends = [p for p in progress if p["batch"] is None and p["phase"] != "setup"]
    assert [p["epoch"] for p in ends] == list(range(1, epochs + 1))
    assert ends[-1]["phase"] == "final"
    metrics = [e["data"] for e in events if e["type"] == "metrics"]
    assert [m["epoch"] for m in metrics] == list(range(1, epochs + 1))
    assert {"mAP50", "mAP50-95", "precision", "recall"} <= set(metrics[-1]["val"])
    assert {"box_loss", "cls_loss"} <= set(metrics[-1]["train"])
    kinds = {e["data"]["kind"] for e in events if e["type"] == "checkpoint"}
    assert kinds == {"best", "last"}
    assert any(e["type"] == "log" for e in events)


@pytest.mark.parametrize("stack", ["embedded_stack", "production_stack"])
def test_train_watch_and_use_the_model(stack: str, request: pytest.FixtureRequest, dataset: Path) -> None:
    url, storage, key = request.getfixturevalue(stack)
    client = ApiClient(url, key)
    started = time.monotonic()
    job = client.submit(
        {
            "name": f"shapes {stack}",
            "project": "e2e",
            "task_type": "detection",
            "model_name": "yolo11n",
            "dataset_path": str(dataset),
            "config": {"epochs": 2, "imgsz": 128, "batch": 8, "workers": 0, "plots": False},
        }
    )
    assert job["status"] == "queued"

    # A second client hangs up after a few events and comes back with Last-Event-ID.
    first_part = follow(url, key, job["id"], stop_after=4)
    whole = follow(url, key, job["id"])
    elapsed = time.monotonic() - started
    rest = follow(url, key, job["id"], after=first_part[-1]["seq"])
    assert first_part + rest == whole
    assert_training_story(whole, epochs=2)
    print(f"\n[{stack}] submit -> completed over SSE: {elapsed:.1f} s")

    final = client.get_job(job["id"])
    assert final["status"] == "completed" and final["current_epoch"] == 2 and final["attempt"] == 1
    results = final["results"]
    assert results["epochs_completed"] == 2 and results["best_epoch"] in (1, 2)
    assert "mAP50" in results["best_metrics"] and results["training_time_seconds"] > 0
    prefix = "projects/e2e/model/training/" + final["name"].lower().replace(" ", "-")
    assert final["checkpoints"] == {"best": f"{prefix}/weights/best.pt", "last": f"{prefix}/weights/last.pt"}
    for artifact in ("config.yaml", "results.csv", "args.yaml"):
        assert (storage / prefix / "artifacts" / artifact).is_file(), artifact
    assert len((storage / prefix / "artifacts" / "results.csv").read_text().splitlines()) == 3
    metrics = httpx.get(f"{url}/api/v1/training/jobs/{job['id']}/metrics", headers=auth(key)).json()
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]

    # `trainyard jobs watch` on a finished job replays it and exits with its outcome.
    watch = subprocess.run(
        [*TRAINYARD, "jobs", "watch", str(job["id"]), "--api", url],
        env={**os.environ, "TRAINYARD_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert watch.returncode == 0 and "completed" in watch.stdout, watch.stdout + watch.stderr

    from ultralytics import YOLO

    model = YOLO(str(storage / final["checkpoints"]["best"]))
    assert model.names == {0: "red", 1: "blue"}
    prediction = model.predict(str(dataset / "images" / "val" / "0.jpg"), imgsz=128, verbose=False)
    assert prediction[0].boxes is not None


def test_a_job_that_fails_in_the_worker_ends_failed_with_its_code(
    embedded_stack: tuple[str, Path, str], tmp_path: Path
) -> None:
    url, _storage, key = embedded_stack
    broken = tmp_path / "broken"
    # Passes the API's checks (it parses, its folders exist), but there is not one image to train on.
    for split in ("train", "val"):
        (broken / "images" / split).mkdir(parents=True)
    (broken / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: a}\n")
    job = ApiClient(url, key).submit(
        {
            "name": "broken",
            "project": "e2e",
            "dataset_path": str(broken),
            "config": {"epochs": 1, "imgsz": 64},
        }
    )
    events = follow(url, key, job["id"])
    assert [e["data"]["status"] for e in events if e["type"] == "status"] == ["queued", "running", "failed"]
    errors = [e["data"] for e in events if e["type"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == "DATASET_NOT_FOUND", errors
    final = ApiClient(url, key).get_job(job["id"])
    assert final["status"] == "failed" and final["error_code"] == "DATASET_NOT_FOUND"
    assert "images" in final["error_message"]


def test_fine_tune_from_another_jobs_best_weights(
    embedded_stack: tuple[str, Path, str], dataset: Path
) -> None:
    url, _storage, key = embedded_stack
    client = ApiClient(url, key)
    config = {"epochs": 1, "imgsz": 128, "batch": 8, "workers": 0, "plots": False}
    base = client.submit(
        {"name": "ft-base", "project": "e2e", "dataset_path": str(dataset), "config": config}
    )
    assert follow(url, key, base["id"])[-1]["data"]["status"] == "completed"
    tuned = client.submit(
        {
            "name": "ft-tuned",
            "project": "e2e",
            "dataset_path": str(dataset),
            "config": config,
            "checkpoint_job_id": base["id"],
        }
    )
    assert tuned["parent_job_id"] == base["id"]
    events = follow(url, key, tuned["id"])
    assert [e["data"]["status"] for e in events if e["type"] == "status"] == [
        "queued",
        "running",
        "completed",
    ]
    started = next(
        e["data"] for e in events if e["type"] == "log" and "trainer started" in e["data"]["message"]
    )
    assert started["metadata"]["model_source"].endswith("start/weights.pt")
