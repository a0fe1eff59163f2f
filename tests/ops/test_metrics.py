"""/metrics: what an operator's Prometheus scrapes, read back from a real database and Redis."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.core.db import Database
from app.core.jobs import JobStatus
from app.core.tasks import Queue
from app.core.workers import announce
from app.main import create_app
from app.models import SchedulerState
from tests.conftest import clear_caches
from tests.factories import make_job
from tests.ops.conftest import OPS_REDIS_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def client(
    db: Database, ops_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch, admin_headers: dict[str, str]
) -> Iterator[TestClient]:
    monkeypatch.setenv("REDIS_URL", OPS_REDIS_URL)
    clear_caches()
    with TestClient(create_app(db), headers=admin_headers) as test_client:
        yield test_client


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_jobs_by_status_and_wait_time_to_start(client: TestClient, db: Database) -> None:
    now = datetime.now(UTC)
    with db.session() as session:
        make_job(session, "a")
        make_job(session, "b", created_at=now - timedelta(minutes=5))
        running = make_job(session, "c", created_at=now - timedelta(seconds=30), started_at=now)
        running.status = JobStatus.RUNNING
        done = make_job(
            session, "d", created_at=now - timedelta(seconds=130), started_at=now - timedelta(seconds=10)
        )
        done.status = JobStatus.COMPLETED
    metrics = scrape(client)
    assert metrics[("trainyard_jobs", (("status", "queued"),))] == 2
    assert metrics[("trainyard_jobs", (("status", "running"),))] == 1
    assert metrics[("trainyard_jobs", (("status", "completed"),))] == 1
    assert metrics[("trainyard_jobs", (("status", "failed"),))] == 0
    assert metrics[("trainyard_job_wait_samples", ())] == 2
    assert metrics[("trainyard_job_wait_seconds", (("quantile", "1.0"),))] == pytest.approx(120, abs=1)
    assert metrics[("trainyard_job_wait_seconds", (("quantile", "0.5"),))] == pytest.approx(120, abs=1)
    assert metrics[("trainyard_oldest_queued_job_age_seconds", ())] == pytest.approx(300, abs=10)


def test_queue_depth_per_celery_queue(client: TestClient, ops_redis: redis.Redis) -> None:
    ops_redis.rpush(Queue.TRAINING, "m1", "m2", "m3")
    ops_redis.rpush(Queue.INFERENCE, "m4")
    metrics = scrape(client)
    assert metrics[("trainyard_queue_depth", (("queue", "training"),))] == 3
    assert metrics[("trainyard_queue_depth", (("queue", "inference"),))] == 1
    assert metrics[("trainyard_queue_depth", (("queue", "scheduler"),))] == 0


def test_worker_heartbeat_age(client: TestClient, ops_redis: redis.Redis) -> None:
    announce(ops_redis, "box-gpu0", {"id": "box-gpu0", "device": "0"})
    time.sleep(1.2)
    metrics = scrape(client)
    assert metrics[("trainyard_workers_live", ())] == 1
    key = ("trainyard_worker_heartbeat_age_seconds", (("device", "0"), ("worker", "box-gpu0")))
    age = metrics[key]
    assert 1.0 <= age < 10
    announce(ops_redis, "box-gpu0", {"id": "box-gpu0", "device": "0"})
    # A fresh heartbeat reads as younger than the 1.2 s sleep above, however slow the scrape.
    assert scrape(client)[key] < 1.0


def test_sse_clients_are_counted_while_a_stream_is_open(client: TestClient, db: Database) -> None:
    with db.session() as session:
        job_id = make_job(session).id
    before = scrape(client)[("trainyard_sse_clients", ())]
    with client.stream("GET", f"/api/v1/training/jobs/{job_id}/events") as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        assert scrape(client)[("trainyard_sse_clients", ())] == before + 1
    deadline = time.monotonic() + 10
    while scrape(client)[("trainyard_sse_clients", ())] != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert scrape(client)[("trainyard_sse_clients", ())] == before


def test_inference_latency_histogram_is_exposed(client: TestClient) -> None:
    metrics = scrape(client)
    assert ("trainyard_inference_latency_seconds_count", ()) in metrics
    assert ("trainyard_inference_latency_seconds_bucket", (("le", "+Inf"),)) in metrics


def test_queued_jobs_by_pool_and_reason_decisions_and_project_quotas(
    client: TestClient, db: Database, ops_redis: redis.Redis
) -> None:
    with db.session() as session:
        session.merge(SchedulerState(id=1, decisions=5))  # the one row (made by the migration)
        running = make_job(session, "running", project="alpha")
        running.status = JobStatus.RUNNING
        running.project.gpu_quota, running.project.share_weight = 1, 2.0
        make_job(session, "over-quota", project="alpha")  # alpha holds its one GPU: it may only borrow
        make_job(session, "needs-t4", project="beta", pool="t4")  # no worker serves t4
        running_id = running.id
    worker = {
        "id": "box-gpu0",
        "device": "0",
        "queues": ["training"],
        "pool": "a100",
        "current_job": running_id,
    }
    announce(ops_redis, "box-gpu0", worker)
    metrics = scrape(client)
    queued = {
        labels: value
        for (name, labels), value in metrics.items()
        if name == "trainyard_jobs_queued" and value
    }
    assert queued == {
        (("pool", "*"), ("reason", "quota")): 1,
        (("pool", "t4"), ("reason", "pool_unserved")): 1,
    }
    # Every reason of every known pool has a sample, 0 when no job waits for it.
    assert metrics[("trainyard_jobs_queued", (("pool", "a100"), ("reason", "fair_share")))] == 0
    assert metrics[("trainyard_scheduler_decisions_total", ())] == 5
    assert metrics[("trainyard_project_running_jobs", (("project", "alpha"),))] == 1
    assert metrics[("trainyard_project_running_jobs", (("project", "beta"),))] == 0
    assert metrics[("trainyard_project_gpu_quota", (("project", "alpha"),))] == 1
    assert ("trainyard_project_gpu_quota", (("project", "beta"),)) not in metrics  # no quota: no limit
    assert metrics[("trainyard_project_share_weight", (("project", "alpha"),))] == 2.0
    assert metrics[("trainyard_queue_depth", (("queue", "training.a100"),))] == 0  # the pool's own queue
