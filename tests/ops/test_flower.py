"""Flower, started next to a real worker, shows the worker and its queues through its own REST API."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.ops.conftest import worker_is_live
from tests.support.stack import free_port, running, tail, wait_until

pytestmark = pytest.mark.integration

TRAINYARD = [sys.executable, "-m", "app.cli.main"]
FLOWER = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower"]


def test_flower_lists_the_worker_and_its_queues(
    process_env: dict[str, str], ops_redis: redis.Redis, worker_name: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**process_env, "FLOWER_UNAUTHENTICATED_API": "true"}
    worker_log, flower_log = tmp_path / "worker.log", tmp_path / "flower.log"
    worker_cmd = [*TRAINYARD, "worker", "--device", "cpu", "--name", worker_name]
    with running(worker_cmd, env, worker_log), running([*FLOWER, f"--port={port}"], env, flower_log):
        wait_until(worker_is_live(ops_redis, worker_name), "worker presence", tail(worker_log))
        flower = f"http://127.0.0.1:{port}"
        found: dict[str, Any] = {}

        def flower_sees_the_worker() -> bool:
            try:
                response = httpx.get(f"{flower}/api/workers", params={"refresh": 1}, timeout=10)
            except httpx.HTTPError:
                return False
            if response.status_code != 200:
                return False
            found.update({k: v for k, v in response.json().items() if k.startswith(f"{worker_name}@")})
            return bool(found) and all(w.get("active_queues") for w in found.values())

        wait_until(flower_sees_the_worker, "Flower listing the worker", tail(flower_log))
    [(hostname, info)] = found.items()
    assert hostname.startswith(f"{worker_name}@")
    # A CPU worker is in pool `cpu`: jobs that require it are sent to its own queue.
    assert {q["name"] for q in info["active_queues"]} == {"training", "training.cpu", "inference"}
    assert {"trainyard.train", "trainyard.reconcile"} <= set(info["registered"])


def test_flower_command_is_the_one_the_procfile_runs() -> None:
    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text()
    assert "celery -A workers.celery_app flower" in procfile
    assert subprocess.run([*FLOWER, "--help"], capture_output=True, timeout=60).returncode == 0
