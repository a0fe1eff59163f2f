"""Job submissions: `POST /api/v1/training/jobs` from 8 client threads against a real API process, on SQLite
and on a fresh PostgreSQL database, against raw Celery `send_task` of as many messages from as many threads
on the same Redis in the same run (what the API must at least do per job), and against the floor of any
FastAPI service on the same database (bench/floor.py: the same body parsed, one row inserted and committed
through the SQLAlchemy ORM, one Celery message; no key, no check, no event). No worker: jobs stay queued.

    .venv/bin/python bench/bench_submissions.py [--submissions 2000] [--threads 8]
                                                [--databases sqlite,postgres]

Each submission is a tiny valid detection job on a small YOLO folder under an import root; every one must
be answered 201. The API runs as `trainyard serve` runs it (`trainyard api`: one uvicorn process) with
TRAINYARD_SUBMIT_RATE raised (the default, 30/60s per key, would refuse nearly all of them); every other
check runs as in production.

The CPU time the API process spends per submission is reported too, against the CPU the raw sender spends
per message: on a machine shared with other work, wall-clock rates swing with the load, CPU time much less.
Then, from one client (no contention), the API's CPU per submission against its CPU per `GET /health` (what
any request costs it) and per `GET` of a job that does not exist (the key's check, a session, one select).
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.suite import emit, load_average, percentile
from tests.conftest import fresh_postgres, make_api_key
from tests.factories import make_yolo_dataset
from tests.support.fleet import PrivateRedis
from tests.support.stack import TRAINYARD, free_port, running, wait_for

BENCH = Path(__file__).resolve().parent
MAX_SUBMISSIONS = 20_000  # the bench bounds its own load
BENCH_RATE = "1000000/60s"
WARM_UP = 40  # first requests pay imports and connection setup: not counted
ALONE = 300  # requests of each kind from one client


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_threads(
    threads: int, count: int, one: Callable[[Any, int], None], setup: Callable[[], Any]
) -> tuple[float, list[float]]:
    """`one(context, i)` for i in range(count), spread over `threads` threads, each with its own `setup()`;
    (seconds for all, each call's latency in ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        context = setup()
        mine = []
        start.wait()
        try:
            for i in range(worker, count, threads):
                began = time.perf_counter()
                one(context, i)
                mine.append((time.perf_counter() - began) * 1000)
        except BaseException as exc:
            errors.append(exc)
        finally:
            with lock:
                latencies.extend(mine)
            if hasattr(context, "close"):
                context.close()

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - began
    if errors:
        raise errors[0]
    return seconds, latencies


@contextmanager
def database(kind: str, root: Path, name: str, migrated: bool = True) -> Iterator[str]:
    """A fresh database of `kind` (PostgreSQL, or an SQLite file under `root`), migrated unless not."""
    if kind == "postgres":
        with fresh_postgres(name, migrated=migrated) as url:
            yield url
        return
    url = f"sqlite:///{root / f'{name}.db'}"
    if migrated:
        from app.core import migrate

        migrate.upgrade(url)
    yield url


def job_body(dataset: Path, i: int) -> dict[str, Any]:
    """A tiny valid detection job, named uniquely."""
    return {
        "project": "bench",
        "name": f"job-{i}-{time.monotonic_ns()}",
        "model_name": "yolo11n",
        "dataset_path": str(dataset),
        "config": {"epochs": 1, "imgsz": 64},
    }


def posting(dataset: Path) -> Callable[[httpx.Client, int], None]:
    def submit(client: httpx.Client, i: int) -> None:
        response = client.post("/jobs", json=job_body(dataset, i))
        if response.status_code != 201:
            raise RuntimeError(f"submission answered {response.status_code}: {response.text[:500]}")

    return submit


def timed_submissions(
    pid: int,
    client: Callable[[], httpx.Client],
    submit: Callable[[httpx.Client, int], None],
    count: int,
    threads: int,
) -> tuple[float, list[float], float]:
    """(seconds, latencies in ms, CPU ms per submission of the server process `pid`) for `count` submissions
    from `threads` threads, after a warm-up."""
    in_threads(threads, WARM_UP, submit, client)
    cpu_before = cpu_seconds(pid)
    seconds, latencies = in_threads(threads, count, submit, client)
    return seconds, latencies, (cpu_seconds(pid) - cpu_before) * 1000 / count


def submissions(
    kind: str, root: Path, redis_url: str, count: int, threads: int
) -> tuple[float, list[float], float, dict[str, float]]:
    """(seconds, latencies in ms, the API process's CPU ms per submission, and its CPU ms per request of
    each kind from one client)."""
    from app.core.db import Database

    dataset = make_yolo_dataset(root / "imports" / "tiny", train=4, val=2, size=64)
    with database(kind, root, "bench_submit") as url:
        db = Database(url)
        key = make_api_key(db)
        db.dispose()
        env = {
            "TRAINYARD_DATA_DIR": str(root / "data"),
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "TRAINYARD_IMPORT_ROOTS": str(root / "imports"),
            "TRAINYARD_SUBMIT_RATE": BENCH_RATE,
        }
        port = free_port()
        base = f"http://127.0.0.1:{port}/api/v1"
        submit = posting(dataset)

        def client() -> httpx.Client:
            return httpx.Client(
                base_url=f"{base}/training", headers={"Authorization": f"Bearer {key}"}, timeout=60
            )

        with running([*TRAINYARD, "api", "--port", str(port)], env, root / f"api-{kind}.log") as api:
            wait_for(f"http://127.0.0.1:{port}/health", root / f"api-{kind}.log")
            seconds, latencies, cpu = timed_submissions(api.pid, client, submit, count, threads)
            alone = {}
            with client() as http:
                numbers = iter(range(count, count + 2 * ALONE))
                for what, request in {
                    "GET /health": lambda: http.get(f"http://127.0.0.1:{port}/health").raise_for_status(),
                    "GET missing job": lambda: missing(http.get("/jobs/999999999")),
                    "submission": lambda: submit(http, next(numbers)),
                }.items():
                    request()
                    cpu_before = cpu_seconds(api.pid)
                    for _ in range(ALONE):
                        request()
                    alone[what] = (cpu_seconds(api.pid) - cpu_before) * 1000 / ALONE
            return seconds, latencies, cpu, alone


def floor_submissions(
    kind: str, root: Path, redis_url: str, count: int, threads: int
) -> tuple[float, list[float], float]:
    """The same submissions to the floor (bench/floor.py) on a fresh database of the same kind."""
    root.mkdir(parents=True, exist_ok=True)
    with database(kind, root, "bench_floor", migrated=False) as url:
        port = free_port()
        env = {"REDIS_URL": redis_url, "FLOOR_DATABASE_URL": url, "PYTHONPATH": str(BENCH)}
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "floor:api", "--port", str(port)]
        with running([*command, "--log-level", "warning"], env, root / f"floor-{kind}.log") as floor:
            wait_for(f"http://127.0.0.1:{port}/openapi.json", root / f"floor-{kind}.log")

            def client() -> httpx.Client:
                return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

            return timed_submissions(floor.pid, client, posting(root / "unused"), count, threads)


def missing(response: httpx.Response) -> None:
    """A missing job's answer must be the 404 it is timed as (a 401 would time the key check alone)."""
    if response.status_code != 404:
        raise RuntimeError(f"a missing job answered {response.status_code}: {response.text[:500]}")


def raw_celery(redis_url: str, count: int, threads: int) -> tuple[float, list[float], float]:
    """The same number of messages, sent by name as the API sends them, to a queue nobody reads; (seconds,
    latencies in ms, this process's CPU ms per message)."""
    from celery import Celery

    def setup() -> Any:
        celery = Celery("bench", broker=redis_url)
        celery.conf.update(task_serializer="json", task_ignore_result=True)
        return celery

    def send(celery: Any, i: int) -> None:
        celery.send_task("trainyard.train", args=[i, 1], queue="bench-submissions")

    in_threads(threads, WARM_UP, send, setup)
    cpu_before = time.process_time()
    seconds, latencies = in_threads(threads, count, send, setup)
    return seconds, latencies, (time.process_time() - cpu_before) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    count = min(args.submissions, MAX_SUBMISSIONS)
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]

    root = Path(tempfile.mkdtemp(prefix="bench-submissions-"))
    os.environ["TRAINYARD_DATA_DIR"] = str(root / "data")
    redis_server = PrivateRedis(root)
    redis_server.start()
    results: dict[str, tuple[float, list[float], float]] = {}
    alone: dict[str, dict[str, float]] = {}
    load_before = load_average()
    try:
        results["raw Celery send_task"] = raw_celery(redis_server.url, count, args.threads)
        for kind in kinds:
            seconds, latencies, cpu, alone[kind] = submissions(
                kind, root / kind, redis_server.url, count, args.threads
            )
            results[f"REST submit, {kind}"] = seconds, latencies, cpu
            results[f"floor submit, {kind}"] = floor_submissions(
                kind, root / f"floor-{kind}", redis_server.url, count, args.threads
            )
    except BaseException:
        print(f"logs in {root}")
        raise
    else:
        shutil.rmtree(root, ignore_errors=True)
    finally:
        redis_server.stop()
    print(f"{count} submissions from {args.threads} client threads; {os.cpu_count()} cores")
    print(f"load average before: {load_before}; after: {load_average()}")
    print(
        f"TRAINYARD_SUBMIT_RATE={BENCH_RATE} for this bench: the default (30/60s per key) would refuse them"
    )
    print(f"{'':28}{'per s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU ms':>10}")
    rate = {name: count / seconds for name, (seconds, _, _) in results.items()}
    for name, (_, latencies, cpu) in results.items():
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        print(f"{name:28}{rate[name]:10.0f}{p50:10.1f}{p99:10.1f}{cpu:10.2f}")
    raw_name = "raw Celery send_task"
    _, raw_latencies, raw_cpu = results[raw_name]
    rows = []
    for kind in kinds:
        seconds, latencies, cpu = results[f"REST submit, {kind}"]
        rows += [
            {"measure": f"submissions/s, {kind}", "value": count / seconds, "baseline": rate[raw_name]}
            | {"unit": "/s"},
            {"measure": f"submit p50, {kind}", "value": percentile(latencies, 50)}
            | {"baseline": percentile(raw_latencies, 50), "unit": "ms"},
            {"measure": f"submit p99, {kind}", "value": percentile(latencies, 99)}
            | {"baseline": percentile(raw_latencies, 99), "unit": "ms"},
            {"measure": f"API CPU per submission, {kind}", "value": cpu, "baseline": raw_cpu, "unit": "ms"},
        ]
    emit("submit", rows, baseline=f"raw Celery send_task, {args.threads} threads")
    rows = []
    for kind in kinds:
        _, latencies, cpu = results[f"REST submit, {kind}"]
        _, floor_latencies, floor_cpu = results[f"floor submit, {kind}"]
        rows += [
            {"measure": f"submissions/s vs floor, {kind}", "unit": "/s"}
            | {"value": rate[f"REST submit, {kind}"], "baseline": rate[f"floor submit, {kind}"]},
            {"measure": f"submit p50 vs floor, {kind}", "unit": "ms"}
            | {"value": percentile(latencies, 50), "baseline": percentile(floor_latencies, 50)},
            {"measure": f"server CPU per submission vs floor, {kind}", "unit": "ms"}
            | {"value": cpu, "baseline": floor_cpu},
        ]
    emit(
        "submit",
        rows,
        baseline="the floor: bare FastAPI, one ORM insert and commit, send_task (bench/floor.py)",
    )

    print(f"API CPU ms per request from one client ({ALONE} of each):")
    print(f"{'':28}" + "".join(f"{what:>18}" for what in alone[kinds[0]]))
    for kind, cpu_of in alone.items():
        print(f"{kind:28}" + "".join(f"{cpu:18.2f}" for cpu in cpu_of.values()))
    rows = [
        {"measure": f"API CPU, one client, {what} vs GET /health, {kind}", "unit": "ms"}
        | {"value": cpu, "baseline": cpu_of["GET /health"]}
        for kind, cpu_of in alone.items()
        for what, cpu in cpu_of.items()
        if what != "GET /health"
    ]
    emit("submit", rows, baseline="the API's CPU per GET /health (any request's cost), same client")


if __name__ == "__main__":
    main()
