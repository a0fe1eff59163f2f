"""`trainyard serve`: the whole stack as one supervised process group, shut down cleanly on Ctrl-C.

API (uvicorn) + one worker per visible GPU (or one CPU worker) + the scheduler, plus the bundled
Redis when REDIS_URL is not set. A child that dies is restarted with a back-off while the others keep
running (a worker killed for memory comes back; its job is recovered as usual). Each child runs in its
own session so that Ctrl-C reaches only this supervisor, which then stops the children in order:
workers hand back their jobs first. Once the API listens, a banner says where everything is.

The supervisor itself stays small: `trainyard serve` replaces its process with this module's, which
imports no database code (migrations and the first key are made by a child, `trainyard db prepare`).
"""

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from app.cli.bundled_redis import BundledRedis
from app.core.logging import configure_logging
from app.core.settings import get_settings

DEFAULT_API_URL = "http://127.0.0.1:8000"
FIRST_KEY = "first-admin-key="  # how `trainyard db prepare` hands the new key to the supervisor

log = logging.getLogger("app.backend")


def visible_gpus() -> list[int]:
    """GPU indices from nvidia-smi; none on a machine without NVIDIA GPUs (or without the driver)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [int(line) for line in out.split() if line.strip().isdigit()]


def child_commands(host: str, port: int, gpus: list[int]) -> list[tuple[str, list[str]]]:
    cli = [sys.executable, "-m", "app.cli.main"]
    commands = [("api", [*cli, "api", "--host", host, "--port", str(port)])]
    if gpus:
        commands += [(f"worker-gpu{g}", [*cli, "worker", "--gpu", str(g)]) for g in gpus]
    else:
        commands.append(("worker-cpu", [*cli, "worker", "--device", "cpu"]))
    commands.append(("scheduler", [*cli, "scheduler"]))
    return commands


class Child:
    """One supervised process: restarted when it dies, after a back-off that doubles while it keeps
    dying soon after starting (1 s, 2 s, 4 s ... 60 s) and resets once it stayed up a minute."""

    STEADY = 60.0
    MAX_BACKOFF = 60.0

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name, self.command, self.env = name, command, env
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = 1.0
        self.restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env, start_new_session=True)
        self.started = time.monotonic()
        self.restart_at = None

    def check(self, now: float) -> None:
        """Notice a death (and plan the restart), or restart when its back-off is over."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                log.info("restarting %s", self.name)
                self.start()
            return
        if self.process is None or self.process.poll() is None:
            return
        if now - self.started > self.STEADY:
            self.backoff = 1.0
        log.error(
            "%s exited with code %s; restarting it in %.0f s (the rest keep running)",
            self.name,
            self.process.returncode,
            self.backoff,
        )
        self.restart_at = now + self.backoff
        self.backoff = min(self.MAX_BACKOFF, self.backoff * 2)


def serve(host: str, port: int) -> int:
    settings = get_settings()
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TRAINYARD_DATA_DIR=str(settings.resolved_data_dir))
    bundled: BundledRedis | None = None
    if not settings.redis_url:
        bundled = BundledRedis(settings.bundled_redis_socket)
        bundled.start()
        env["REDIS_URL"] = bundled.url
        log.info("bundled Redis on %s", bundled.url)
    children = [Child(name, command, env) for name, command in child_commands(host, port, visible_gpus())]
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    key: str | None = None
    announced = False
    try:
        key = prepare_database(env)
        for child in children:
            child.start()
        while not stopping:
            now = time.monotonic()
            for child in children:
                child.check(now)
            if not announced and listening(host, port):
                sys.stdout.write(banner(host, port, key))
                sys.stdout.flush()
                announced = True
            time.sleep(0.5)
    finally:
        if key is not None and not announced:  # the only chance to see it
            sys.stdout.write(f"First admin API key: TRAINYARD_API_KEY={key}\n")
        _stop_children([(c.name, c.process) for c in children if c.process is not None])
        if bundled is not None:
            bundled.stop()
    return 0


def prepare_database(env: dict[str, str]) -> str | None:
    """Migrate and, on a database without keys, make the first admin key, in a child process (the
    database code stays out of this long-lived one); the new key, if one was made."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "db", "prepare"], env=env, stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"could not prepare the database (exit code {done.returncode}); see above")
    lines = [line for line in done.stdout.splitlines() if line.startswith(FIRST_KEY)]
    return lines[-1][len(FIRST_KEY) :] if lines else None


def listening(host: str, port: int) -> bool:
    connect_to = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    try:
        with socket.create_connection((connect_to, port), timeout=0.5):
            return True
    except OSError:
        return False


def cli_command() -> str:
    """How to call the CLI from here: `trainyard` when it is on PATH, else its path (`.venv/bin/trainyard`
    after `make run`)."""
    installed = Path(sys.executable).parent / "trainyard"
    if shutil.which("trainyard") == str(installed) or not installed.exists():
        return "trainyard"
    with contextlib.suppress(ValueError):
        return str(installed.relative_to(Path.cwd()))
    return str(installed)


def banner(host: str, port: int, key: str | None) -> str:
    """What a person needs once the API listens: where things are, and how to point the CLI at them."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{port}"
    lines = [
        "",
        "Trainyard is up (Ctrl-C stops it)",
        f"  dashboard  {url}/",
        f"  API        {url}/api/v1   (reference: {url}/docs)",
        "",
        "For the CLI in another terminal:",
    ]
    if url != DEFAULT_API_URL:
        lines.append(f"  export TRAINYARD_API_URL={url}")
    lines.append(f"  export TRAINYARD_API_KEY={key or '<your key>   (`trainyard keys create` makes one)'}")
    lines += [f"then: {cli_command()} demo   (a first model in a few minutes)", ""]
    return "\n".join(lines) + "\n"


def _stop_children(children: list[tuple[str, subprocess.Popen[bytes]]], grace: float = 30.0) -> None:
    # Workers first (they hand their running jobs back to the queue), then API and scheduler.
    ordered = sorted(children, key=lambda c: not c[0].startswith("worker"))
    for _name, child in ordered:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for name, child in ordered:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", name)
            child.kill()
            child.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="trainyard serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    arguments = parser.parse_args()
    configure_logging("serve")
    sys.exit(serve(arguments.host, arguments.port))
