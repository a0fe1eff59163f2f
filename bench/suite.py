"""What every benchmark shares: percentiles, and its result line for `make bench` (bench/run.py).

A bench prints its own table for a reader and then one `BENCH-RESULT {json}` line: its rows, each a
measure, its value and the baseline measured in the same run, so the runner needs no knowledge of it.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "BENCH-RESULT "


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as a bench reports the machine it ran on."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def emit(bench: str, rows: list[dict[str, Any]], baseline: str) -> None:
    """Rows: {"measure", "value", "baseline", "unit"}; `baseline` names what the baselines are."""
    print(MARKER + json.dumps({"bench": bench, "baseline": baseline, "rows": rows}), flush=True)


@contextmanager
def embedded_workdir(prefix: str, parent: Path | None, keep: bool) -> Iterator[Path]:
    """A scratch folder for a bench on the embedded defaults (its data dir, SQLite, local storage),
    removed afterwards unless `keep`."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.environ["TRAINYARD_DATA_DIR"] = str(work / "data")
    os.environ.pop("DATABASE_URL", None)
    os.environ["TRAINYARD_STORAGE"] = "local"
    try:
        yield work
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class RecordingStack:
    """A scratch SQLite database and a Redis server of its own that this process records events into and
    publishes on, as a worker does, with an admin key; `env` is what an API process next to it needs."""

    root: Path
    db: Any
    key: str
    env: dict[str, str]


@contextmanager
def recording_stack(prefix: str) -> Iterator[RecordingStack]:
    from app.core import migrate
    from app.core.db import Database
    from tests.conftest import make_api_key
    from tests.support.fleet import own_redis

    root = Path(tempfile.mkdtemp(prefix=prefix))
    database_url = f"sqlite:///{root / 'trainyard.db'}"
    migrate.upgrade(database_url)
    try:
        with own_redis(root) as redis_url:
            os.environ["REDIS_URL"] = redis_url
            os.environ["DATABASE_URL"] = database_url
            db = Database(database_url)
            env = {
                "TRAINYARD_DATA_DIR": str(root / "data"),
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
            }
            try:
                yield RecordingStack(root, db, make_api_key(db), env)
            finally:
                db.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
