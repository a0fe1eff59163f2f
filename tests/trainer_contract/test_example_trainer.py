"""The framework-free example trainer (examples/plain_pytorch) end to end: a real API and a real worker
process, followed over SSE. It must show up exactly like a YOLO job; over HTTP callbacks too."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from httpx_sse import connect_sse

from app.core import migrate
from app.core.db import Database
from app.core.events import EventType, record_event
from app.core.jobs import JobStatus
from app.core.security import job_token
from app.models import Project, TrainingJob
from app.training import state
from tests.conftest import bearer_headers, clear_caches, make_api_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TRAINYARD_CONTRACT_REDIS_URL", "redis://127.0.0.1:6379/11")
EXAMPLE = REPO / "examples" / "plain_pytorch" / "train.py"
EPOCHS = 3


@dataclass
class Stack:
    api: str
    data_dir: Path
    db: Database
    env: dict[str, str]
    worker: str
    key: str  # an admin API key

    @property
    def headers(self) -> dict[str, str]:
        return bearer_headers(self.key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Any, what: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} while waiting for {what}")
        try:
            if check():
                return
        except (httpx.HTTPError, redis.RedisError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("contract")
    data_dir = tmp / "data"
    database_url = f"sqlite:///{tmp / 'trainyard.db'}"
    migrate.upgrade(database_url)
    redis.Redis.from_url(REDIS_URL).flushdb()
    port = _free_port()
    api = f"http://127.0.0.1:{port}"
    worker = f"contract-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "TRAINYARD_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "TRAINYARD_API_URL": api,
        "TRAINYARD_ENV": "dev",
        "TRAINYARD_SECRET_KEY": secrets.token_urlsafe(32),
        "PYTHONUNBUFFERED": "1",
    }
    logs = {name: (tmp / f"{name}.log").open("wb") for name in ("api", "worker")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=tmp,
            stdout=logs["api"],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "trainyard"), "worker", "--device", "cpu", "--name", worker],
            env=env,
            cwd=tmp,
            stdout=logs["worker"],
            stderr=subprocess.STDOUT,
        ),
    ]
    # The test process talks to the same database and uses the same secret as the stack.
    with pytest.MonkeyPatch.context() as mp:
        for key in (
            "TRAINYARD_DATA_DIR",
            "DATABASE_URL",
            "REDIS_URL",
            "TRAINYARD_API_URL",
            "TRAINYARD_ENV",
            "TRAINYARD_SECRET_KEY",
        ):
            mp.setenv(key, env[key])
        clear_caches()
        db = Database(database_url)
        try:
            key = make_api_key(db)

            def worker_ready() -> bool:  # the workers' details need a key
                health = httpx.get(f"{api}/health", headers=bearer_headers(key), timeout=2).json()
                return any(w.get("id") == worker for w in health["workers"]["workers"])

            _wait(worker_ready, "the API and the worker", procs, timeout=90)
            yield Stack(api, data_dir, db, env, worker, key)
        except BaseException:
            for name, handle in logs.items():
                handle.flush()
                sys.stderr.write(f"---- {name} log ----\n{(tmp / f'{name}.log').read_text()[-6000:]}\n")
            raise
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            db.dispose()
            clear_caches()
            redis.Redis.from_url(REDIS_URL).flushdb()


def follow(stack: Stack, job_id: int, timeout: float = 180.0) -> list[dict[str, Any]]:
    """Every event of the job over SSE, until the stream ends with the job."""
    events = []
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=timeout), headers=stack.headers) as client,
        connect_sse(client, "GET", f"{stack.api}/api/v1/training/jobs/{job_id}/events") as source,
    ):
        for sse in source.iter_sse():
            if sse.event in {e.value for e in EventType}:
                envelope = json.loads(sse.data)
                assert int(sse.id) == envelope["seq"] and sse.event == envelope["type"]
                events.append(envelope)
    return events


def assert_shows_up_like_a_yolo_job(stack: Stack, job_id: int, events: list[dict[str, Any]]) -> None:
    assert all(set(e) == {"job_id", "seq", "type", "ts", "data"} for e in events)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "seq must be contiguous"
    assert [e["data"]["status"] for e in events if e["type"] == "status"] == [
        "queued",
        "running",
        "completed",
    ]
    progress = [e["data"] for e in events if e["type"] == "progress"]
    assert all(set(p) == {"epoch", "epochs", "batch", "batches", "eta_s", "phase"} for p in progress)
    ends = [(p["epoch"], p["epochs"], p["phase"]) for p in progress if p["batch"] is None]
    assert ends == [(1, EPOCHS, "train"), (2, EPOCHS, "train"), (EPOCHS, EPOCHS, "final")]
    within = [p for p in progress if p["batch"] is not None]
    assert all(p["phase"] == "train" and 1 <= p["batch"] <= p["batches"] for p in within)
    metrics = [e["data"] for e in events if e["type"] == "metrics"]
    assert [m["epoch"] for m in metrics] == list(range(1, EPOCHS + 1))
    assert all("loss" in m["train"] and "accuracy" in m["val"] for m in metrics)
    checkpoints = [e["data"] for e in events if e["type"] == "checkpoint"]
    assert {c["kind"] for c in checkpoints} == {"best", "last"}
    assert [c["epoch"] for c in checkpoints if c["kind"] == "last"] == list(range(1, EPOCHS + 1))
    logs = [e["data"]["message"] for e in events if e["type"] == "log"]
    assert any(m.startswith("trainer started") for m in logs)
    assert any(m.startswith(f"training {EPOCHS} epochs") for m in logs)

    job = httpx.get(f"{stack.api}/api/v1/training/jobs/{job_id}", headers=stack.headers).json()
    assert job["status"] == "completed" and job["framework"] == "pytorch"
    assert job["current_epoch"] == EPOCHS and job["total_epochs"] == EPOCHS
    assert job["results"]["epochs_completed"] == EPOCHS
    assert job["results"]["final_metrics"]["accuracy"] > 0.5
    storage = stack.data_dir / "storage"
    for kind in ("best", "last"):
        key = job["checkpoints"][kind]
        assert key.endswith(f"/weights/{kind}.pt")
        assert (storage / key).stat().st_size > 0
    history = httpx.get(f"{stack.api}/api/v1/training/jobs/{job_id}/metrics", headers=stack.headers).json()
    assert [e["epoch"] for e in history["epochs"]] == list(range(1, EPOCHS + 1))


def test_the_example_trainer_runs_on_a_real_worker_like_yolo(stack: Stack) -> None:
    body = {
        "name": "plain run",
        "project": "contract",
        "framework": "pytorch",
        "task_type": "classification",
        "model_name": "tiny-mlp",
        "config": {"epochs": EPOCHS, "lr": 0.05, "batch": 32},
    }
    preflight = httpx.post(f"{stack.api}/api/v1/training/preflight", json=body, headers=stack.headers).json()
    assert preflight["ok"] is True, preflight["problems"]
    assert [w["id"] for w in preflight["workers"]["workers"]] == [stack.worker]
    response = httpx.post(f"{stack.api}/api/v1/training/jobs", json=body, headers=stack.headers)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    events = follow(stack, job_id)
    assert_shows_up_like_a_yolo_job(stack, job_id, events)
    running = next(e for e in events if e["type"] == "status" and e["data"]["status"] == "running")
    assert running["data"]["worker"] == stack.worker
    # Once done, the token of the finished attempt changes nothing.
    token = job_token(job_id, 1)
    refused = httpx.post(
        f"{stack.api}/api/v1/training/jobs/{job_id}/callback/progress",
        json={"epoch": 1, "total_epochs": EPOCHS},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status_code == 409


def _running_job_without_a_worker(db: Database, name: str) -> int:
    """A pytorch job taken by an external trainer: created and claimed here, never sent to the queue."""
    with db.session() as s:
        project = s.query(Project).filter_by(name="contract").one_or_none() or Project(
            name="contract", slug="contract"
        )
        job = TrainingJob(
            project=project,
            name=name,
            slug=name,
            framework="pytorch",
            task_type="classification",
            model_name="tiny-mlp",
            config={"epochs": EPOCHS, "lr": 0.05, "batch": 32},
            status=JobStatus.QUEUED,
            attempt=1,
            last_event_seq=0,
            total_epochs=EPOCHS,
        )
        s.add(job)
        s.flush()
        record_event(s, job, EventType.STATUS, {"status": JobStatus.QUEUED, "attempt": 1})
        job_id = job.id
    with db.session() as s:
        assert state.claim(s, job_id, 1, "external-trainer", ttl_seconds=600) is not None
    return job_id


def test_the_example_trainer_reports_over_http_callbacks(stack: Stack) -> None:
    job_id = _running_job_without_a_worker(stack.db, "over-http")
    run_dir = stack.data_dir / "runs" / f"external-{job_id}"  # the API copies checkpoints from here
    run_dir.mkdir(parents=True)
    env = {k: v for k, v in stack.env.items() if k not in {"TRAINYARD_REPORT_FD", "CONFIG_PATH"}}
    env.update(
        {
            "JOB_ID": str(job_id),
            "RUN_DIR": str(run_dir),
            "DEVICE": "cpu",
            "CONFIG": json.dumps({"epochs": EPOCHS, "lr": 0.05, "batch": 32}),
            "CALLBACK_URL": f"{stack.api}/api/v1/training/jobs/{job_id}/callback",
            "TRAINYARD_JOB_TOKEN": job_token(job_id, 1),
        }
    )
    trainer = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, timeout=180)
    assert trainer.returncode == 0, trainer.stderr.decode()[-3000:]
    events = follow(stack, job_id, timeout=30)
    assert_shows_up_like_a_yolo_job(stack, job_id, events)
    assert all(
        c["data"]["path"].startswith("projects/contract/model/training/over-http/weights/")
        for c in events
        if c["type"] == "checkpoint"
    )


def test_an_external_trainer_with_a_wrong_token_changes_nothing(stack: Stack) -> None:
    job_id = _running_job_without_a_worker(stack.db, "wrong-token")
    env = {
        **stack.env,
        "JOB_ID": str(job_id),
        "RUN_DIR": str(stack.data_dir / "runs" / "wrong"),
        "CONFIG": json.dumps({"epochs": 1}),
        "CALLBACK_URL": f"{stack.api}/api/v1/training/jobs/{job_id}/callback",
        "TRAINYARD_JOB_TOKEN": job_token(job_id + 1000, 1),
    }
    trainer = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, timeout=180)
    assert trainer.returncode != 0
    assert b"401" in trainer.stderr
    job = httpx.get(f"{stack.api}/api/v1/training/jobs/{job_id}", headers=stack.headers).json()
    assert (job["status"], job["current_epoch"]) == ("running", 0)
    events = httpx.get(f"{stack.api}/api/v1/training/jobs/{job_id}/logs", headers=stack.headers).json()
    assert events["total"] == 0


def test_the_workers_current_job_changes_with_the_claim_and_the_end(stack: Stack) -> None:
    """`GET /workers/{id}` tells the job a worker runs from its claim to its end, not up to 10 s late."""

    def current_job() -> Any:
        url = f"{stack.api}/api/v1/workers/{stack.worker}"
        return httpx.get(url, headers=stack.headers, timeout=5).json()["current_job"]

    def within(seconds: float, check: Any) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.05)
        return False

    body = {
        "name": "registry run",
        "project": "contract",
        "framework": "pytorch",
        "task_type": "classification",
        "model_name": "tiny-mlp",
        "config": {"epochs": 2, "lr": 0.05, "batch": 32},
    }
    response = httpx.post(f"{stack.api}/api/v1/training/jobs", json=body, headers=stack.headers)
    job_id = response.json()["id"]

    def status() -> str:
        url = f"{stack.api}/api/v1/training/jobs/{job_id}"
        return str(httpx.get(url, headers=stack.headers, timeout=5).json()["status"])

    assert within(30, lambda: status() != "queued")
    assert within(1.0, lambda: current_job() == job_id), "the claim did not show"
    assert within(60, lambda: status() == "completed")
    assert within(1.0, lambda: current_job() is None), "the end of the job did not show"
