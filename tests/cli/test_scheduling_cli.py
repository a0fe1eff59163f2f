"""Scheduling from the terminal: `jobs submit --priority --pool`, why a queued job waits in `jobs list`
and `jobs show`, pools in `workers list`, and `projects set` for quotas and weights. The commands run as a
user runs them (a process) against a real API (in a thread of the test, on a real database and Redis)."""

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
import uvicorn

from app.core.db import Database
from app.core.redis import get_redis
from app.core.workers import announce
from app.main import create_app
from app.scheduling.priorities import Priority, PriorityName
from app.training import state
from tests.conftest import make_api_key
from tests.factories import make_yolo_dataset
from tests.support.stack import TRAINYARD, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """What the commands print does not depend on the dialect (the services' tests cover both)."""
    return sqlite_url


@pytest.fixture
def api_url(db: Database) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(db), host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("sched-cli") / "shapes", train=2, val=1, size=32)


GPU0 = {"id": "box-gpu0", "host": "box", "device": "0", "queues": ["training"], "pool": "a100"}


def trainyard(api_url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINYARD_API_URL": api_url, "TRAINYARD_API_KEY": key, "COLUMNS": "250"}
    return subprocess.run([*TRAINYARD, *args], env=env, capture_output=True, text=True, timeout=120)


def submit(
    api_url: str, key: str, name: str, dataset: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    args = ["jobs", "submit", "--name", name, "--project", "alpha", "--dataset", str(dataset), "--json"]
    return trainyard(api_url, key, *args, *options)


def test_the_priority_names_are_the_levels() -> None:
    assert list(get_args(PriorityName)) == [p.name.lower() for p in Priority]


def test_quota_priority_pool_and_why_a_job_waits(api_url: str, db: Database, shapes: Path) -> None:
    admin, member = make_api_key(db), make_api_key(db, "member", ["alpha"])
    announce(get_redis(), "box-gpu0", GPU0)

    quota = trainyard(api_url, admin, "projects", "set", "alpha", "--gpu-quota", "1", "--share-weight", "2")
    assert quota.returncode == 0, quota.stderr
    assert quota.stdout.strip() == "project alpha: gpu quota 1, share weight 2.0, 0 running"
    refused = trainyard(api_url, member, "projects", "set", "alpha", "--gpu-quota", "3")
    assert refused.returncode == 6 and "quota" in refused.stderr, refused.stderr
    assert trainyard(api_url, admin, "projects", "set", "alpha", "--gpu-quota", "lots").returncode == 2

    # A member may ask for high at most, and only for a pool some worker serves.
    urgent = submit(api_url, member, "u", shapes, "--priority", "urgent")
    assert urgent.returncode == 2 and "priority" in urgent.stderr and "high at most" in urgent.stderr
    nowhere = submit(api_url, member, "n", shapes, "--pool", "h100")
    assert nowhere.returncode == 2 and "pool" in nowhere.stderr and "a100" in nowhere.stderr
    first = submit(api_url, member, "first", shapes)
    assert first.returncode == 0, first.stderr
    first_id = json.loads(first.stdout)["id"]
    with db.session() as session:  # alpha now holds the one GPU its quota allows
        state.claim(session, first_id, 1, "box-gpu0", 30, host="box")
    announce(get_redis(), "box-gpu0", {**GPU0, "current_job": first_id})
    second = submit(api_url, member, "second", shapes, "--priority", "HIGH", "--pool", "a100")
    assert second.returncode == 0, second.stderr
    job = json.loads(second.stdout)
    assert (job["priority"], job["pool"]) == ("high", "a100")

    shown = json.loads(trainyard(api_url, member, "jobs", "show", str(job["id"]), "--json").stdout)
    assert shown["waiting"]["kind"] == "quota" and shown["waiting"]["position"] == 1
    described = trainyard(api_url, member, "jobs", "show", str(job["id"])).stdout
    assert "      priority: high\n" in described and "          pool: a100\n" in described
    assert "       waiting: #1 in line: quota reached: project alpha runs 1 of its 1 GPUs;" in described
    assert "        starts: no estimate yet" in described  # no job has finished: nothing to go by
    listed = trainyard(api_url, member, "jobs", "list", "--project", "alpha").stdout
    (row,) = [line for line in listed.splitlines() if " second " in line]
    assert "high" in row and "queued (next)" in row and "quota reached" in row, listed
    (running,) = [line for line in listed.splitlines() if " first " in line]
    assert "normal" in running and "running" in running and "quota" not in running

    workers = trainyard(api_url, admin, "workers", "list").stdout
    header, *rows = [line for line in workers.splitlines() if "pool" in line or "box-gpu0" in line]
    assert "pool" in header and "a100" in rows[0], workers
    projects = trainyard(api_url, admin, "projects", "list").stdout
    (alpha,) = [line for line in projects.splitlines() if " alpha " in line]
    assert [cell.strip() for cell in alpha.split("│")[3:7]] == ["2", "1", "1", "2.0"], (
        projects
    )  # jobs, running, quota, weight

    unlimited = trainyard(api_url, admin, "projects", "set", "alpha", "--gpu-quota", "none", "--json")
    assert json.loads(unlimited.stdout)["gpu_quota"] is None
