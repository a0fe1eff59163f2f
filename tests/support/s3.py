"""A real S3-compatible HTTP server (moto's server mode) on a free loopback port: for the storage tests
(tests/storage/conftest.py) and the dataset cache benchmark."""

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.stack import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "trainyard-test",
    "AWS_SECRET_ACCESS_KEY": "trainyard-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_server(folder: Path) -> Iterator[str]:
    """The server's URL while it runs; its output goes to `folder/moto.log`."""
    port = free_port()
    log = folder / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)
