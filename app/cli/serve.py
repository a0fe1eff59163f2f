"""`trainyard serve`: the whole stack as one process group, shut down cleanly on Ctrl-C.

API (uvicorn) + one worker per visible GPU (or one CPU worker) + the scheduler, plus the bundled
Redis when REDIS_URL is not set. Each child runs in its own session so that Ctrl-C reaches only
this supervisor, which then stops the children in order: workers hand back their jobs first.
"""

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from types import FrameType

from app.cli.bundled_redis import BundledRedis
from app.core import migrate
from app.core.settings import get_settings

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
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        migrate.upgrade(settings.resolved_database_url)
        first_admin_key(settings.resolved_database_url)
        for name, command in child_commands(host, port, visible_gpus()):
            children.append((name, subprocess.Popen(command, env=env, start_new_session=True)))
            log.info("started %s (pid %s)", name, children[-1][1].pid)
        log.info("Trainyard is up: http://%s:%s/docs (Ctrl-C stops it)", host, port)
        while not stopping:
            for name, child in children:
                if child.poll() is not None:
                    log.error("%s exited with code %s; stopping the stack", name, child.returncode)
                    stopping = True
            time.sleep(0.5)
    finally:
        _stop_children(children)
        if bundled is not None:
            bundled.stop()
    return 0


def first_admin_key(database_url: str) -> None:
    """On a database without any key, make an admin key and show it once (stdout, not the log)."""
    from app.core.db import Database
    from app.keys import service
    from app.models import Role

    db = Database(database_url)
    try:
        with db.session() as session:
            if service.has_keys(session):
                return
            _key, token, _ = service.create_key(session, Role.ADMIN, [], name="first admin key")
    finally:
        db.dispose()
    log.info("created the first admin API key")
    sys.stdout.write(
        "\nFirst admin API key (shown only now; `trainyard keys create` makes more):\n"
        f"  TRAINYARD_API_KEY={token}\n\n"
    )
    sys.stdout.flush()


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
