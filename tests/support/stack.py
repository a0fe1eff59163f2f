"""Real processes for end-to-end tests: start them, wait until they serve, stop them cleanly."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

TRAINYARD = [sys.executable, "-m", "app.cli.main"]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def running(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own session, logging to `log`; SIGTERM (then SIGKILL) when done."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(url: str, log: Path, timeout: float = 60.0, workers: int = 0) -> None:
    """Until GET url answers 200 (and, with `workers`, /health counts that many live workers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200 and (
                not workers or response.json()["workers"]["count"] >= workers
            ):
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready; log:\n{log.read_text()[-3000:]}")


def wait_until(check: Callable[[], T], what: str, logs: Callable[[], str], timeout: float = 60.0) -> T:
    """The first truthy value of `check`, polled; past `timeout`, TimeoutError with what the logs say."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}; log:\n{logs()[-4000:]}")
        time.sleep(0.3)


def tail(log: Path) -> Callable[[], str]:
    return lambda: log.read_text(errors="replace") if log.exists() else ""


def create_key(env: dict[str, str], *args: str) -> str:
    """`trainyard keys create` against the stack's database (default: an admin key); returns the key."""
    result = subprocess.run(
        [*TRAINYARD, "keys", "create", *(args or ("--role", "admin"))],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sqlite_env(root: Path, redis_url: str, import_root: Path) -> dict[str, str]:
    """The environment of a stack on a migrated SQLite file and a data dir under `root`, the given Redis,
    and datasets from under `import_root`."""
    from app.core import migrate

    database_url = f"sqlite:///{root / 'trainyard.db'}"
    migrate.upgrade(database_url)
    return {
        "TRAINYARD_DATA_DIR": str(root / "data"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TRAINYARD_IMPORT_ROOTS": str(import_root),
    }


@contextmanager
def api_and_worker(root: Path, env: dict[str, str], worker: str) -> Iterator[tuple[str, str]]:
    """`trainyard api` + one `trainyard worker --device cpu` on a migrated database: (url, admin key)."""
    key = create_key(env)
    port = free_port()
    with (
        running([*TRAINYARD, "api", "--port", str(port)], env, root / "api.log"),
        running([*TRAINYARD, "worker", "--device", "cpu", "--name", worker], env, root / "worker.log"),
    ):
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/health", root / "worker.log", workers=1)
        yield url, key


@contextmanager
def embedded_serve(data: Path, import_root: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """`trainyard serve` with nothing configured but its data dir (SQLite file, bundled Redis, local
    storage) and where datasets may come from: (url, the first admin key its banner printed, process).
    Its log is `serve.log` beside the data dir."""
    port = free_port()
    log = data.parent / "serve.log"
    env = {
        "TRAINYARD_DATA_DIR": str(data),
        "REDIS_URL": "",
        "DATABASE_URL": "",
        "TRAINYARD_IMPORT_ROOTS": str(import_root),
    }
    with running([*TRAINYARD, "serve", "--port", str(port)], env, log) as serve:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/health", log, workers=1)
        wait_until(lambda: "Trainyard is up" in log.read_text(), "the banner", tail(log))
        printed = re.findall(r"export TRAINYARD_API_KEY=(ty_\S+)", log.read_text())
        assert len(printed) == 1, log.read_text()[-3000:]
        yield url, printed[0], serve
