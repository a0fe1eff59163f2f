"""Recovery time after a worker dies: SIGKILL the worker running a job, time until the job runs again
on another worker. Real processes (API, scheduler, two CPU workers) on PostgreSQL and a private Redis.

    .venv/bin/python bench/bench_recovery.py [--runs 3]

The baseline is the lease TTL in force: the least time in which a dead worker can be told apart from
a slow one. Celery alone would wait for the broker's visibility timeout (1 h) before redelivering.
"""

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core import migrate
from bench.suite import emit
from tests.conftest import PG_ADMIN_URL
from tests.factories import make_yolo_dataset
from tests.support.fleet import LEASE, Fleet, PrivateRedis, running_fleet
from tests.support.stack import stop


def one_run(fleet: Fleet, dataset: Path, run: int) -> float:
    for name in (f"r{run}-a", f"r{run}-b"):
        fleet.start_worker(name)
    job = fleet.submit(f"recovery-{run}", dataset, epochs=4)
    # Mid-epoch: the first report of a training batch (setup reports come before any epoch).
    early = fleet.follow(job["id"], until=lambda e: e["type"] == "progress" and e["data"]["phase"] == "train")
    victim = next(e for e in reversed(early) if e["type"] == "status")["data"]["worker"]
    fleet.kill_worker(victim)
    killed = time.monotonic()
    fleet.follow(
        job["id"],
        after=early[-1]["seq"],
        until=lambda e: e["type"] == "status" and e["data"]["status"] == "running",
    )
    recovery = time.monotonic() - killed
    fleet.follow(job["id"])
    for process in fleet.workers.values():
        stop(process, grace=15)
    fleet.workers.clear()
    return recovery


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    root = Path(tempfile.mkdtemp(prefix="trainyard-bench-recovery-"))
    redis_server = PrivateRedis(root)
    redis_server.start()
    name = f"trainyard_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    rendered = url.render_as_string(hide_password=False)
    migrate.upgrade(rendered)
    env = {
        "TRAINYARD_DATA_DIR": str(root / "data"),
        "DATABASE_URL": rendered,
        "REDIS_URL": redis_server.url,
        "TRAINYARD_IMPORT_ROOTS": str(root),  # the dataset below
    }
    try:
        with running_fleet(root, {**env, **LEASE}) as fleet:
            dataset = make_yolo_dataset(root / "shapes", train=48, val=8, size=96)
            times = [one_run(fleet, dataset, run) for run in range(runs)]
    finally:
        redis_server.stop()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ttl = float(LEASE["TRAINYARD_LEASE_TTL"])
    median = statistics.median(times)
    print(
        f"lease TTL {ttl:.0f} s, heartbeat {LEASE['TRAINYARD_HEARTBEAT']} s, "
        f"reconcile every {LEASE['TRAINYARD_RECONCILE_EVERY']} s"
    )
    print(
        f"worker SIGKILL -> job running again: median {median:.1f} s, min {min(times):.1f} s, "
        f"max {max(times):.1f} s over {runs} runs ({median / ttl:.2f} x lease TTL)"
    )
    row = {
        "measure": "worker SIGKILL -> running again, median",
        "value": median,
        "baseline": ttl,
        "unit": "s",
    }
    emit("recovery", [row], baseline="lease TTL")


if __name__ == "__main__":
    main()
