"""The Procfile, run by honcho: web, worker, beat and flower come up together and stop cleanly."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from app.core.workers import live_workers
from tests.support.stack import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_honcho_runs_the_procfile_and_stops_it_cleanly(
    process_env: dict[str, str], ops_redis: redis.Redis, tmp_path: Path
) -> None:
    port, flower_port = free_port(), free_port()
    (tmp_path / "empty.env").write_text("")
    env = {
        **os.environ,
        **process_env,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # `trainyard` and `celery` of this virtualenv
        "FLOWER_PORT": str(flower_port),
        "FLOWER_UNAUTHENTICATED_API": "true",
    }
    log = tmp_path / "honcho.log"
    command = [str(BIN / "honcho"), "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT)]
    command += ["-e", str(tmp_path / "empty.env"), "-p", str(port), "--no-colour"]
    with log.open("wb") as out:
        honcho = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", log, timeout=90, workers=1)
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["status"] == "ok" and health["workers"] == {"ok": True, "count": 1}
        assert [w["device"] for w in live_workers(ops_redis)] == ["cpu"]
        assert httpx.get(f"http://127.0.0.1:{flower_port}/api/workers", timeout=10).status_code == 200
    finally:
        if honcho.poll() is None:
            honcho.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            honcho.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()
            pytest.fail(f"honcho did not stop; log:\n{log.read_text()[-3000:]}")
    output = log.read_text()
    for name in ("web", "worker", "beat", "flower"):
        assert f"{name}.1" in output
    # Clean stop: the worker withdrew its presence itself and nothing of the group is left running.
    assert live_workers(ops_redis) == []
    assert "SIGKILL" not in output, output[-3000:]
    with pytest.raises(ProcessLookupError):
        os.killpg(honcho.pid, 0)
