"""A job's start and its whole run against bare Ultralytics, in the same run: a tiny 3-epoch detect job
(16 images at 128 px) submitted to a real stack (API, scheduler, one CPU worker, SQLite, a Redis of its
own), against the same config trained by `YOLO(...).train(...)` in a fresh process, as `yolo train` would.

    .venv/bin/python bench/bench_training.py [--rounds 3]

Measures, alternating rounds: POST -> the job's first batch on an SSE client (the worker keeps a spare
trainer process: TRAINYARD_WARM_TRAINER, on by default; then again with it off), against a bare
process's start -> its first batch; and POST -> completed against the bare process's whole run.
Goals (issue 18): first batch <= 1.5 s and <= 0.3x bare; the whole job <= 1.03x bare.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.configs.catalog import model_yaml
from app.training.data_yaml import write_resolved
from bench.suite import emit
from tests.factories import make_yolo_dataset
from tests.support.fleet import Fleet, own_redis, running_fleet
from tests.support.stack import sqlite_env, stop

CONFIG = {"epochs": 3, "imgsz": 128, "batch": 8}
SETTLE = 10.0  # seconds between jobs: time for a warm worker's spare trainer to finish its imports

BARE = """
import json, sys, time
from ultralytics import YOLO
config = json.loads(sys.argv[1])
marks = {}
def first_batch(trainer):
    marks.setdefault("first_batch", time.monotonic())
model = YOLO(config.pop("model"), task="detect")
model.add_callback("on_train_batch_end", first_batch)
model.train(**config)
print("BARE " + json.dumps(marks), flush=True)
"""


def submitted_run(fleet: Fleet, dataset: Path, name: str) -> tuple[float, float, dict[str, Any]]:
    """(POST -> first batch event, POST -> completed, the job as it ran) for one job."""
    body = {"name": name, "project": "bench", "dataset_path": str(dataset), "config": CONFIG}
    posted = time.monotonic()
    response = httpx.post(f"{fleet.url}/api/v1/training/jobs", json=body, headers=fleet.headers, timeout=30)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    first_batch = None
    with (
        httpx.Client(base_url=fleet.url, headers=fleet.headers, timeout=httpx.Timeout(10, read=300)) as http,
        connect_sse(http, "GET", f"/api/v1/training/jobs/{job_id}/events") as source,
    ):
        for sse in source.iter_sse():
            if not sse.data:
                continue
            event = json.loads(sse.data)
            data = event["data"]
            batch = event["type"] == "progress" and data.get("batch") and data["epoch"] >= 1
            if first_batch is None and batch:
                first_batch = time.monotonic() - posted
            if event["type"] == "status" and data["status"] in ("completed", "failed", "cancelled"):
                assert data["status"] == "completed", data
                break
    done = time.monotonic() - posted
    assert first_batch is not None, "no batch progress"
    return first_batch, done, fleet.job(job_id)


def bare_run(config: dict[str, Any], model: str, data: Path, project: Path) -> tuple[float, float]:
    """(process start -> first batch, process start -> exit) for the same training by hand."""
    args = {**config, "model": model, "data": str(data), "device": "cpu"}
    args.update(project=str(project), name="bare", exist_ok=True)
    started = time.monotonic()
    output = subprocess.run(
        [sys.executable, "-c", BARE, json.dumps(args)], capture_output=True, text=True, check=True
    ).stdout
    ended = time.monotonic()
    marks = json.loads(next(line for line in output.splitlines() if line.startswith("BARE "))[5:])
    return marks["first_batch"] - started, ended - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (database, logs)")
    args = parser.parse_args()
    rounds = args.rounds
    root = Path(tempfile.mkdtemp(prefix="trainyard-bench-training-"))
    imports = root / "datasets"
    dataset = make_yolo_dataset(imports / "shapes")
    results: dict[str, list[float]] = {k: [] for k in ("warm", "cold", "warm_total", "bare", "bare_total")}
    with own_redis(root) as redis_url:
        env = sqlite_env(root, redis_url, imports)
        ultralytics_dir = root / "data" / "ultralytics"
        os.environ.update(YOLO_CONFIG_DIR=str(ultralytics_dir), YOLO_OFFLINE="1")
        from workers.ultralytics.offline import prepare_offline

        prepare_offline(ultralytics_dir)
        with running_fleet(root, env) as fleet:
            for warm in (True, False):
                phase = "warm" if warm else "cold"
                worker = fleet.start_worker(f"bench-{phase}", {"TRAINYARD_WARM_TRAINER": str(warm).lower()})
                # The dataset's label cache, the worker's first claim.
                submitted_run(fleet, dataset, f"{phase}-warm-up")
                for round_ in range(rounds):
                    time.sleep(SETTLE)
                    first, total, job = submitted_run(fleet, dataset, f"{phase}-{round_}")
                    bare = ""
                    results["warm" if warm else "cold"].append(first)
                    if warm:
                        results["warm_total"].append(total)
                        model = model_yaml(job["model_name"], job["task_type"])
                        data = write_resolved(Path(job["dataset_path"]), root / "bare" / "data.yaml")
                        bare_first, bare_total = bare_run(job["config"], model, data, root / "bare")
                        results["bare"].append(bare_first)
                        results["bare_total"].append(bare_total)
                        bare = f"; bare {bare_first:.2f} s, {bare_total:.2f} s"
                    print(
                        f"{phase} round {round_}: first batch {first:.2f} s, job {total:.2f} s{bare}; "
                        f"load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                stop(worker, grace=15)
                fleet.workers.clear()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    median = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"\nfirst batch after POST: warm spare {median['warm']:.2f} s, cold {median['cold']:.2f} s; "
        f"bare Ultralytics process {median['bare']:.2f} s"
    )
    print(f"whole 3-epoch job: {median['warm_total']:.2f} s vs bare {median['bare_total']:.2f} s")
    emit(
        "training",
        [
            {
                "measure": "POST -> first batch, spare trainer (median)",
                "value": median["warm"],
                "baseline": median["bare"],
                "unit": "s",
            },
            {
                "measure": "POST -> first batch, cold trainer (median)",
                "value": median["cold"],
                "baseline": median["bare"],
                "unit": "s",
            },
            {
                "measure": "POST -> completed, 3-epoch job (median)",
                "value": median["warm_total"],
                "baseline": median["bare_total"],
                "unit": "s",
            },
        ],
        "a bare Ultralytics process training the same config",
    )


if __name__ == "__main__":
    main()
