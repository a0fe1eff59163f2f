"""Server time of the dashboard's pages on a big database: 10,000 jobs with 1,000 events each.

Run: .venv/bin/python bench/bench_dashboard.py [--jobs 10000] [--events 1000] [--database-url URL]
     [--runs 30]

The database (a SQLite file in a temporary folder by default; any migrated URL with --database-url) is
filled with bulk inserts shaped like real jobs: 2 status events, a progress and a metrics event per epoch,
a few checkpoints, the rest log lines (each also a training_logs row), half the jobs completed with
results. Each page is then rendered in-process (the ASGI app, no network) `--runs` times; the figures are
server time per request (median and p95), the target being < 150 ms.
"""

import argparse
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.core import migrate
from app.core.db import Database
from app.keys.service import create_key
from app.main import create_app
from app.models import JobEvent, Project, Role, TrainingJob, TrainingLog
from bench.suite import emit

EPOCHS = 50
TARGET_MS = 150.0
CHECKPOINTS = 5


def job_row(job_id: int, project_id: int, completed: bool, events: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    best = {"mAP50-95": 0.4, "mAP50": 0.6}
    return {
        "id": job_id,
        "project_id": project_id,
        "name": f"run-{job_id}",
        "slug": f"run-{job_id}",
        "framework": "ultralytics",
        "task_type": "detection",
        "model_name": "yolo11n",
        "dataset_path": "/data/shapes",
        "config": {"epochs": EPOCHS, "imgsz": 640, "batch": 16, "lr0": 0.01},
        "status": "completed" if completed else "running",
        "attempt": 1,
        "last_event_seq": events,
        "current_epoch": EPOCHS,
        "total_epochs": EPOCHS,
        "results": {"best_epoch": 42, "best_metrics": best, "final_metrics": best} if completed else None,
        "created_at": now - timedelta(minutes=job_id),
        "updated_at": now,
    }


def job_events(job_id: int, events: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(job_events rows, training_logs rows) of one job."""
    start = datetime.now(UTC) - timedelta(hours=1)
    rows, logs = [], []
    special = {1: "status", 2: "status"}
    step = max((events - 2) // (2 * EPOCHS + CHECKPOINTS), 1)
    seq, epoch = 3, 1
    while seq <= events and epoch <= EPOCHS:
        special[seq], special[seq + 1] = "progress", "metrics"
        if epoch % (EPOCHS // CHECKPOINTS) == 0:
            special[seq + 2] = "checkpoint"
        seq, epoch = seq + 2 * step, epoch + 1
    epoch = 0
    for seq in range(1, events + 1):
        kind, ts = special.get(seq, "log"), start + timedelta(seconds=seq)
        if kind == "status":
            data: dict[str, Any] = {"status": "queued" if seq == 1 else "running", "attempt": 1}
        elif kind == "progress":
            epoch += 1
            data = {
                "epoch": epoch,
                "epochs": EPOCHS,
                "batch": 100,
                "batches": 100,
                "eta_s": 60.0,
                "phase": "train",
            }
        elif kind == "metrics":
            data = {
                "epoch": epoch,
                "train": {"box_loss": 1.0 / epoch, "cls_loss": 2.0 / epoch, "dfl_loss": 1.1},
                "val": {"precision": 0.5, "recall": 0.4, "mAP50": 0.3 + epoch / 500, "mAP50-95": epoch / 200},
            }
        elif kind == "checkpoint":
            data = {"kind": "last", "epoch": epoch, "path": "weights/last.pt", "size_bytes": 5_000_000}
        else:
            data = {"level": "INFO", "message": f"epoch {epoch} batch line {seq}"}
            logs.append(
                {
                    "job_id": job_id,
                    "level": "INFO",
                    "message": data["message"],
                    "timestamp": ts,
                    "source": "trainer",
                }
            )
        rows.append({"job_id": job_id, "seq": seq, "type": kind, "ts": ts, "data": data})
    return rows, logs


def fill(db: Database, jobs: int, events: int) -> str:
    """Insert the jobs and their events; returns an admin key."""
    with db.session() as session:
        session.execute(
            insert(Project), [{"id": i, "name": f"project-{i}", "slug": f"project-{i}"} for i in (1, 2)]
        )
        _key, token, _ = create_key(session, Role.ADMIN, [])
    chunk = max(10_000 // max(events, 1), 1)
    for first in range(1, jobs + 1, chunk):
        ids = range(first, min(first + chunk, jobs + 1))
        with db.session() as session:
            session.execute(insert(TrainingJob), [job_row(i, 1 + i % 2, i % 2 == 0, events) for i in ids])
            for job_id in ids:
                rows, logs = job_events(job_id, events)
                session.execute(insert(JobEvent), rows)
                if logs:
                    session.execute(insert(TrainingLog), logs)
        if first % 1000 < chunk:
            print(f"  {min(first + chunk - 1, jobs):,} jobs written", flush=True)
    return token


def timed(client: TestClient, path: str, runs: int) -> tuple[float, float, float]:
    """(first, median, p95) ms: the first render also fills the caches (templates, the list's summaries)."""
    started = time.perf_counter()
    client.get(path)
    first = (time.perf_counter() - started) * 1000
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    times.sort()
    return first, statistics.median(times), times[max(int(len(times) * 0.95) - 1, 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--database-url")
    parser.add_argument("--keep", type=Path, help="keep the SQLite file here; reuse it when it exists")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.db"
        url = args.database_url or f"sqlite:///{path}"
        reuse = args.database_url is None and path.exists()
        if args.database_url is None and not reuse:
            migrate.upgrade(url)
        db = Database(url)
        started = time.perf_counter()
        if reuse:
            with db.session() as session:
                _key, key, _ = create_key(session, Role.ADMIN, [])
        else:
            key = fill(db, args.jobs, args.events)
            print(
                f"filled {args.jobs:,} jobs x {args.events:,} events in {time.perf_counter() - started:.0f} s"
            )
        client = TestClient(create_app(db), follow_redirects=False)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request of the bench
        assert client.post("/login", data={"api_key": key}).status_code == 303
        last_page = max(args.jobs // 100, 1)  # the list shows 100 jobs a page; pages count from 1
        pages = {
            "jobs, page 1": "/jobs",
            f"jobs, page {last_page}": f"/jobs?page={last_page}",
            "jobs, project + status": "/jobs?project=project-1&status=running",
            f"job (running, {args.events:,} events)": f"/jobs/{args.jobs - (args.jobs % 2 == 0)}",
            "job (completed)": f"/jobs/{args.jobs // 2 * 2}",
            "compare 8 jobs": "/compare?ids=" + ",".join(str(i) for i in range(1, 9)),
        }
        print(f"{'page':32} {'first ms':>9} {'median ms':>10} {'p95 ms':>8}   (target < 150 ms)")
        rows = []
        for name, path in pages.items():
            first, median, p95 = timed(client, path, args.runs)
            print(f"{name:32} {first:9.1f} {median:10.1f} {p95:8.1f}")
            rows.append({"measure": f"{name} p95", "value": p95, "baseline": TARGET_MS, "unit": "ms"})
        db.dispose()
    emit("dashboard", rows, baseline=f"the target ({TARGET_MS:.0f} ms)")


if __name__ == "__main__":
    main()
