"""Structured logs: with TRAINYARD_ENV=production every record the API and a worker write is one
JSON object per line, with the category and the request/job context an operator filters on."""

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.tasks import Queue, TaskName
from app.main import create_app
from tests.ops.conftest import worker_is_live
from tests.support.stack import TRAINYARD, auth, create_key, free_port, tail, wait_for, wait_until

pytestmark = pytest.mark.integration


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line, parsed: a line that is not JSON fails the test."""
    entries = []
    for line in text.splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON log line: {line[:300]!r}")
    return entries


def run_until_stopped(command: list[str], env: dict[str, str], stderr: Path) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as err:
        return subprocess.Popen(
            command,
            env={**os.environ, **env, "TRAINYARD_ENV": "production"},
            stdout=subprocess.DEVNULL,  # Celery's banner; records go to stderr
            stderr=err,
            start_new_session=True,
        )


def terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_api_writes_json_lines_with_request_id_and_categories(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "api.log"
    key = auth(create_key(process_env))
    api = run_until_stopped([*TRAINYARD, "api", "--port", str(port)], process_env, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/health", log)
        resolved = httpx.post(
            f"{base}/api/v1/training/config/resolve",
            json={"task": "detection", "overrides": {"epochs": 3}},
            headers={"x-request-id": "req-resolve", **key},
        )
        assert resolved.status_code == 200
        missing = httpx.get(
            f"{base}/api/v1/training/jobs/999999", headers={"x-request-id": "req-missing", **key}
        )
        assert missing.status_code == 404
    finally:
        terminate(api)
    entries = json_lines(log.read_text())
    assert all({"ts", "level", "category", "component", "message"} <= e.keys() for e in entries)
    assert {e["component"] for e in entries} == {"api"}
    by_request = {(e.get("request_id"), e["category"]) for e in entries}
    assert ("req-resolve", "operations.training") in by_request
    assert ("req-missing", "errors.validation") in by_request
    assert any(e["category"].startswith("uvicorn") for e in entries)  # the server's own lines too


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setenv("TRAINYARD_LOG_FORMAT", "json")
    yield
    root.handlers, root.level = saved[0], saved[1]


def test_an_unhandled_error_is_logged_as_errors_system_with_its_traceback(
    db: Database, json_logs: None, capsys: pytest.CaptureFixture[str], admin_headers: dict[str, str]
) -> None:
    app = create_app(db)

    def boom() -> None:
        raise RuntimeError("disk on fire")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"x-request-id": "req-boom", **admin_headers})
    assert response.status_code == 500
    assert "disk on fire" not in response.text
    entries = json_lines(capsys.readouterr().err)
    [error] = [e for e in entries if e["category"] == "errors.system"]
    assert error["request_id"] == "req-boom"
    assert error["level"] == "ERROR"
    assert "RuntimeError: disk on fire" in error["exc"]


def test_worker_writes_json_lines_with_job_id_and_attempt(
    process_env: dict[str, str], ops_redis: redis.Redis, worker_name: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    command = [*TRAINYARD, "worker", "--device", "cpu", "--name", worker_name]
    worker = run_until_stopped(command, process_env, log)
    try:
        wait_until(worker_is_live(ops_redis, worker_name), "worker presence", tail(log))
        # A queued job (its dataset is missing, so the attempt fails at once) and a wake-up: the runner
        # binds the context of the job it claims before it does anything for it.
        from celery import Celery

        from app.core.db import Database
        from tests.factories import make_job

        with Database(process_env["DATABASE_URL"]).session() as session:
            job_id = make_job(session, name="logged", dataset_path="/nowhere").id
        sender = Celery("ops-test", broker=process_env["REDIS_URL"])
        sender.send_task(TaskName.TRAIN, args=[job_id, 1], queue=Queue.TRAINING)
        sender.close()
        wait_until(
            lambda: "does not exist on this host" in log.read_text(), "the attempt being logged", tail(log)
        )
    finally:
        terminate(worker)
    entries = json_lines(log.read_text())
    assert {e["component"] for e in entries} == {f"worker:{worker_name}"}
    # Records written while the task runs, whichever library writes them, carry the job's context.
    in_job = [e for e in entries if e.get("job_id") == job_id]
    assert in_job and all(e["attempt"] == 1 for e in in_job)
    assert any(e["category"].startswith("celery") for e in entries)  # Celery's own records, same format
