"""Scheduling decisions (issue 17): how fast a free GPU gets its next job with 10,000 jobs queued across 50
projects (weights, quotas, four priorities), on a scratch SQLite file and a fresh PostgreSQL database.

1. Decisions/s: `state.claim_next` (the scheduler's pick under its one-row mutex, then the claim) against a
   plain FIFO claim, `SELECT id ... WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED` and
   the same transition, measured in the same run from the same state. A fleet of `--fleet` GPUs is busy:
   before each decision the longest-running job ends (untimed), so the queue's fair share sees a live
   fleet; each decision is its own transaction, timed alone.
2. Why pending: `scheduling.explain` of one queued job (its place in the scheduler's line, reason and
   estimate; what GET of a queued job computes), against the FIFO queue position it replaced (one
   row_number() query over the queue).
3. Free GPU -> next claim: a real worker process (`trainyard worker --gpu 0`, simulated) on the PostgreSQL
   queue runs plain PyTorch jobs one after the other; the gap is from a job's completion (`finished_at`,
   its trainer has exited) to the worker's claim of the next (`started_at`), against issue 17's 1 s.

    .venv/bin/python bench/bench_scheduling.py [--jobs 10000] [--projects 50] [--decisions 400]
                                               [--fleet 64] [--explains 20] [--gaps 5]
                                               [--databases sqlite,postgres]
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core import migrate
from app.core.db import Database
from app.core.events import lock_job
from app.core.jobs import JobStatus
from app.models import JobEvent, Project, TrainingJob
from app.models.base import utcnow
from app.scheduling import service as scheduling
from app.training import state
from bench.suite import emit, percentile
from tests.conftest import clear_caches, fresh_postgres
from tests.support.fleet import own_redis
from tests.support.stack import TRAINYARD, running

OWNER, TTL = "bench-claimer", 600.0
# Share of the queue at each priority (low, normal, high, urgent).
PRIORITY_MIX = [(0, 0.2), (1, 0.69), (2, 0.1), (3, 0.01)]
Claim = Callable[[Session], TrainingJob | None]


# The queue ---------------------------------------------------------------------------------------------
def fill(db: Database, jobs: int, projects: int) -> None:
    """`projects` projects (weights 1-4, every fifth with a GPU quota of 2) and `jobs` queued plain PyTorch
    jobs spread over them at random, each with a priority drawn from PRIORITY_MIX."""
    rng = random.Random(17)
    with db.session() as session:
        owners = [
            Project(
                name=f"team-{n}",
                slug=f"team-{n}",
                share_weight=1 + n % 4,
                gpu_quota=2 if n % 5 == 0 else None,
            )
            for n in range(projects)
        ]
        session.add_all(owners)
        session.flush()
        levels, weights = zip(*PRIORITY_MIX, strict=True)
        now = utcnow()
        rows = [
            {
                "project_id": rng.choice(owners).id,
                "name": f"job-{n}",
                "slug": f"job-{n}",
                "framework": "pytorch",
                "task_type": "classification",
                "model_name": "mlp",
                "config": {"epochs": 1, "lr": 0.01, "batch": 16},
                "total_epochs": 1,
                "status": JobStatus.QUEUED,
                "priority": rng.choices(levels, weights)[0],
                "attempt": 1,
                "last_event_seq": 0,
                "attempts": [],
                "dispatched_at": now - timedelta(seconds=jobs - n),
            }
            for n in range(jobs)
        ]
        session.execute(insert(TrainingJob), rows)
        session.execute(text("ANALYZE"))  # the planner's statistics, as a live database keeps them


def requeue_all(db: Database) -> None:
    """Back to the state `fill` left (untimed): every job queued on its first attempt, no events."""
    with db.session() as session:
        session.execute(delete(JobEvent))
        session.execute(
            update(TrainingJob).values(
                status=JobStatus.QUEUED,
                attempt=1,
                attempts=[],
                last_event_seq=0,
                lease_owner=None,
                lease_expires_at=None,
                callback_token_hash=None,
                started_at=None,
                finished_at=None,
            )
        )


def end_longest_running(db: Database) -> None:
    """A GPU comes free (untimed; past the state machine, which would only add the same cost to both)."""
    with db.session() as session:
        oldest = session.scalar(
            select(TrainingJob.id)
            .where(TrainingJob.status == JobStatus.RUNNING)
            .order_by(TrainingJob.started_at, TrainingJob.id)
            .limit(1)
        )
        if oldest is not None:
            session.execute(
                update(TrainingJob)
                .where(TrainingJob.id == oldest)
                .values(status=JobStatus.COMPLETED, finished_at=utcnow(), lease_owner=None)
            )


# The two claims ---------------------------------------------------------------------------------------
def scheduled_claim(session: Session) -> TrainingJob | None:
    return state.claim_next(session, OWNER, TTL, host="bench", pool="simulated")


def fifo_claim(session: Session) -> TrainingJob | None:
    """What a dispatcher without a policy does: the oldest queued job, then the same transition."""
    job_id = session.scalar(
        select(TrainingJob.id)
        .where(TrainingJob.status == JobStatus.QUEUED)
        .order_by(TrainingJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if job_id is None:
        return None
    job = lock_job(session, job_id)
    state.transition(session, job, JobStatus.RUNNING, owner=OWNER, host="bench", ttl_seconds=TTL)
    return job


def decisions(db: Database, claim: Claim, count: int, fleet: int) -> list[float]:
    """Milliseconds of each of `count` claims, each made when one GPU of a busy fleet came free."""
    requeue_all(db)
    for _ in range(fleet):  # the fleet busy before the clock starts
        with db.session() as session:
            assert claim(session) is not None
    times = []
    for _ in range(count):
        end_longest_running(db)
        began = time.perf_counter()
        with db.session() as session:
            claimed = claim(session)
        times.append((time.perf_counter() - began) * 1000)
        assert claimed is not None
    return times


def compare(db: Database, count: int, fleet: int, rounds: int = 2) -> dict[str, list[float]]:
    """Both claims, alternating rounds so that a change of the machine's load hits both alike."""
    found: dict[str, list[float]] = {"scheduler": [], "fifo": []}
    for _ in range(rounds):
        found["scheduler"] += decisions(db, scheduled_claim, count // rounds, fleet)
        found["fifo"] += decisions(db, fifo_claim, count // rounds, fleet)
    return found


# Why pending ------------------------------------------------------------------------------------------
def fifo_position(session: Session, job_id: int) -> int | None:
    """The queue position before issue 17: queued jobs sent before this one."""
    order = (TrainingJob.dispatched_at, TrainingJob.id)
    ranked = (
        select(TrainingJob.id, (func.row_number().over(order_by=order) - 1).label("ahead"))
        .where(TrainingJob.status == JobStatus.QUEUED, TrainingJob.dispatched_at.is_not(None))
        .subquery()
    )
    ahead: int | None = session.scalar(select(ranked.c.ahead).where(ranked.c.id == job_id))
    return ahead


def why_pending(db: Database, calls: int) -> dict[str, list[float]]:
    """Milliseconds of each of `calls` explanations of a job in the middle of the queue, and as many FIFO
    positions of it, alternating."""
    requeue_all(db)
    with db.session() as session:
        queued = session.scalars(select(TrainingJob.id).order_by(TrainingJob.id)).all()
    job_id = queued[len(queued) // 2]
    found: dict[str, list[float]] = {"explain": [], "fifo": []}
    for _ in range(calls):
        for name, ask in (
            ("explain", lambda s: scheduling.explain(s, [job_id], [])[job_id]),
            ("fifo", lambda s: fifo_position(s, job_id)),
        ):
            began = time.perf_counter()
            with db.session() as session:
                assert ask(session) is not None
            found[name].append((time.perf_counter() - began) * 1000)
    return found


# A real worker --------------------------------------------------------------------------------------------
def worker_gaps(database_url: str, redis_url: str, root: Path, gaps: int) -> list[float]:
    """Seconds from each job's completion to the worker's claim of the next, over `gaps` job changes of one
    simulated-GPU worker working through the queue."""
    from app.core.tasks import Queue, TaskName, send_task

    db = Database(database_url)
    requeue_all(db)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TRAINYARD_DATA_DIR": str(root / "data"),
        "TRAINYARD_SIMULATE_GPU": "1",
    }
    command = [*TRAINYARD, "worker", "--gpu", "0", "--queues", "training", "--name", "bench-gpu0"]
    with running(command, env, root / "worker.log"):
        wait(lambda: "is up, consuming" in (root / "worker.log").read_text(), 120, root / "worker.log")
        send_task(TaskName.TRAIN, [0, 1], Queue.TRAINING)  # the wake-up; it then claims job after job
        wait(lambda: len(finished(db)) > gaps, 120 + 60 * gaps, root / "worker.log")
        wait(lambda: len(started(db)) > gaps + 1, 60, root / "worker.log")
        runs = sorted(started(db), key=lambda run: run[1])
    db.dispose()
    # One worker: each job starts after the one before it ended.
    return [(later[1] - earlier[2]).total_seconds() for earlier, later in pairwise(runs)][:gaps]


def started(db: Database) -> list[tuple[int, Any, Any]]:
    with db.session() as session:
        rows = session.execute(
            select(TrainingJob.id, TrainingJob.started_at, TrainingJob.finished_at).where(
                TrainingJob.started_at.is_not(None)
            )
        ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def finished(db: Database) -> list[int]:
    return [job_id for job_id, _, end in started(db) if end is not None]


def wait(check: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(log.read_text()[-3000:])
        time.sleep(0.2)


# Setup and report -------------------------------------------------------------------------------------
@contextmanager
def database(kind: str, root: Path) -> Iterator[str]:
    if kind == "postgres":
        with fresh_postgres("bench_scheduling") as url:
            yield url
    else:
        url = f"sqlite:///{root / 'trainyard.db'}"
        migrate.upgrade(url)
        yield url


def summary(times: list[float]) -> tuple[float, float, float]:
    """(decisions/s, p50 ms, p99 ms)."""
    return len(times) / (sum(times) / 1000), percentile(times, 50), percentile(times, 99)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--decisions", type=int, default=400)
    parser.add_argument("--fleet", type=int, default=64)
    parser.add_argument("--explains", type=int, default=20)
    parser.add_argument("--gaps", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="trainyard-bench-scheduling-"))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    rows, gaps = [], []
    with own_redis(root) as redis_url:
        os.environ["REDIS_URL"] = redis_url  # claims publish their status events, as a worker's do
        clear_caches()
        for kind in args.databases.split(","):
            with database(kind, root) as url:
                db = Database(url)
                fill(db, args.jobs, args.projects)
                found = compare(db, args.decisions, args.fleet)
                pending = why_pending(db, args.explains)
                db.dispose()
                (rate, p50, p99), (fifo_rate, fifo_p50, fifo_p99) = map(summary, found.values())
                print(
                    f"{kind:9} {args.jobs} queued, {args.projects} projects, {args.fleet} GPUs busy: "
                    f"scheduler {rate:7.1f} decisions/s (p50 {p50:5.1f} ms, p99 {p99:5.1f} ms) | "
                    f"FIFO {fifo_rate:7.1f}/s (p50 {fifo_p50:5.1f} ms, p99 {fifo_p99:5.1f} ms) | "
                    f"{rate / fifo_rate:.2f}x"
                )
                explained, position = (percentile(times, 50) for times in pending.values())
                print(
                    f"{kind:9} why pending, one queued job of {args.jobs}: explain p50 {explained:6.1f} ms | "
                    f"FIFO position p50 {position:6.1f} ms | {explained / position:.1f}x"
                )
                rows += [
                    {"measure": f"{kind}: decisions/s", "value": rate, "baseline": fifo_rate, "unit": "1/s"},
                    {"measure": f"{kind}: decision p50", "value": p50, "baseline": fifo_p50, "unit": "ms"},
                    {"measure": f"{kind}: decision p99", "value": p99, "baseline": fifo_p99, "unit": "ms"},
                    {
                        "measure": f"{kind}: why pending p50",
                        "value": explained,
                        "baseline": position,
                        "unit": "ms",
                    },
                ]
                if kind == "postgres" and args.gaps:
                    gaps = worker_gaps(url, redis_url, root, args.gaps)
    emit(
        "scheduling",
        rows,
        baseline="plain FIFO claim (ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED); FIFO queue position",
    )
    if gaps:
        median = statistics.median(gaps)
        print(
            f"real worker, PostgreSQL, {args.jobs} queued: job completed -> next job claimed "
            f"median {median * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms over {len(gaps)} (target 1 s)"
        )
        row = {
            "measure": "job completed -> next claimed, median",
            "value": median,
            "baseline": 1.0,
            "unit": "s",
        }
        emit("scheduling-gap", [row], baseline="issue 17's target: within 1 s of a GPU becoming free")


if __name__ == "__main__":
    main()
