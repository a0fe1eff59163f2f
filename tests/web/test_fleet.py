"""The Fleet page without a browser: workers with their device, pool and heartbeat, pools, queue depths,
the oldest waiting job; drain only for keys that cover every project."""

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.redis import get_redis
from app.core.workers import DRAINING, announce
from app.models import TrainingJob
from tests.web.conftest import Jobs, csrf_of, sign_in

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(jobs: Jobs) -> str:
    info = {
        "id": "gpu0-box",
        "host": "box",
        "device": "0",
        "gpu_name": "Test GPU",
        "memory_total_mb": 81920,
        "queues": ["training", "inference"],
        "pool": "a100",
        "current_job": jobs.alpha,
        "cache_bytes": 3 * 2**30 + 2**29,
        "disk_free_bytes": 120 * 2**30,
        "disk_total_bytes": 2**40,
    }
    announce(get_redis(), "gpu0-box", info)
    return "gpu0-box"


def test_the_fleet_shows_workers_queues_and_the_oldest_waiting_job(
    admin: TestClient, worker: str, jobs: Jobs
) -> None:
    page = admin.get("/fleet").text
    assert 'id="worker-gpu0-box"' in page and "Test GPU" in page and "80.0 GB" in page
    assert "120.0 GB free <small>of 1.0 TB</small>" in page and "caches 3.5 GB" in page
    assert f'<a href="/jobs/{jobs.alpha}">#{jobs.alpha}</a>' in page  # its current job
    assert "training: 0 waiting" in page
    assert f'oldest queued job <a href="/jobs/{jobs.beta}">#{jobs.beta} b-run</a>' in page
    assert "act-drain" in page


def test_the_fleet_shows_each_pool_its_workers_and_the_jobs_that_need_it(
    admin: TestClient, db: Database, worker: str, jobs: Jobs
) -> None:
    with db.session() as session:
        session.get_one(TrainingJob, jobs.beta).pool = "t4"  # no worker serves it
    page = admin.get("/fleet").text
    assert "<td>a100</td>" in page.split(f'id="worker-{worker}"')[1].split("</tr>")[0]  # the worker's pool
    cells = dict(re.findall(r'<tr id="pool-(\w+)">(.*?)</tr>', page, re.S))
    assert re.findall(r'class="num">(\d+)', cells["a100"]) == ["1", "1", "0"]  # live, busy, queued
    assert re.findall(r'class="num">(\d+)', cells["t4"]) == ["0", "0", "1"]
    assert "no live worker serves it" in cells["t4"] and "no live worker" not in cells["a100"]
    assert "training.a100: 0 waiting" in page  # the pool's own queue


def test_only_an_all_projects_writer_drains(
    app: FastAPI, keys: dict[str, str], worker: str, jobs: Jobs
) -> None:
    member = sign_in(app, keys["member_alpha"])
    page = member.get("/fleet").text
    assert 'id="worker-gpu0-box"' in page and "act-drain" not in page
    refused = member.post(
        f"/fleet/{worker}/drain", headers={"X-CSRF-Token": csrf_of(member), "HX-Request": "true"}
    )
    assert refused.status_code == 403 and "admin key" in refused.text
    assert not get_redis().sismember(DRAINING, worker)
    admin = sign_in(app, keys["admin"])
    drained = admin.post(
        f"/fleet/{worker}/drain", headers={"X-CSRF-Token": csrf_of(admin), "HX-Request": "true"}
    )
    assert drained.status_code == 200 and "worker gpu0-box is draining" in drained.text
    assert get_redis().sismember(DRAINING, worker)
