"""Why a queued job waits (app/scheduling/service.py `explain`): its place in the scheduler's line, the
reason and an estimated start, on SQLite and PostgreSQL."""

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import Database
from app.core.jobs import JobStatus
from app.models import TrainingJob
from app.models.base import utcnow
from app.scheduling import service as scheduling
from app.scheduling.policy import Waiting, order
from app.scheduling.priorities import Priority
from app.training import state
from tests.factories import make_job
from tests.scheduling.workload import configure_project, hold_until, named, submit

pytestmark = pytest.mark.integration


def worker(name: str, pool: str = "t4", current_job: int | None = 1) -> dict[str, Any]:
    """A registry entry (app/core/workers.py) of an online training worker."""
    return {
        "id": name,
        "queues": ["training", "inference"],
        "status": "online",
        "pool": pool,
        "current_job": current_job,
    }


BUSY = [worker("w1"), worker("w2")]


def queue(db: Database) -> dict[str, int]:
    """alpha runs its quota (1 GPU); beta, gamma and alpha queue jobs of these names (ids in this order)."""
    configure_project(db, "alpha", quota=1)
    (running,) = submit(db, "alpha", ["a0"])
    with db.session() as s:
        assert state.claim(s, running, 1, "w1", 60) is not None
    ids = named(db, "alpha", ["a1", "a2"]) | named(db, "beta", ["bh1", "bh2"], priority=Priority.HIGH)
    ids |= named(db, "beta", ["bn"]) | named(db, "gamma", ["g1"]) | named(db, "beta", ["bp"], pool="h100")
    ids |= named(db, "beta", ["br"])
    hold_until(db, ids["br"], 3600)  # a retry in its backoff
    return ids


def explained(
    db: Database, ids: dict[str, int], workers: list[dict[str, Any]]
) -> dict[str, scheduling.Pending]:
    with db.session() as s:
        found = scheduling.explain(s, ids.values(), workers)
    by_id = {job_id: name for name, job_id in ids.items()}
    return {by_id[job_id]: pending for job_id, pending in found.items()}


def finish_two_jobs(db: Database, seconds: tuple[int, int] = (100, 200)) -> None:
    """Two finished jobs that ran `seconds` each: what an estimate goes by."""
    now = utcnow()
    with db.session() as s:
        for span in seconds:
            job = make_job(s, f"done-{span}", "history")
            job.status = JobStatus.COMPLETED
            job.started_at, job.finished_at = now - timedelta(seconds=span + 10), now - timedelta(seconds=10)


def test_positions_follow_the_line_order_draws(db: Database) -> None:
    ids = queue(db)
    with db.session() as s:
        rows = s.execute(
            select(TrainingJob.id, TrainingJob.project_id, TrainingJob.priority, TrainingJob.pool).where(
                TrainingJob.status == JobStatus.QUEUED
            )
        ).all()
        line = order([Waiting(*row) for row in rows], scheduling.loads(s))
    pending = explained(db, ids, BUSY)
    by_id = {job_id: name for name, job_id in ids.items()}
    assert [(by_id[waiting.id], pending[by_id[waiting.id]].position) for waiting, _ in line] == [
        (name, place)
        for place, name in enumerate(["bh1", "g1", "bh2", "bn", "bp", "br", "a1", "a2"], start=1)
    ]


def test_each_queued_job_says_why_it_waits(db: Database) -> None:
    ids = queue(db)
    reasons = {name: pending.reason for name, pending in explained(db, ids, BUSY).items()}
    with db.session() as s:
        backoff_ends = s.get_one(TrainingJob, ids["br"]).dispatched_at
    assert backoff_ends is not None
    assert reasons == {
        "bh1": "waiting for a GPU: 2 busy, 0 job(s) ahead by fair share",
        "g1": "behind 1 job(s) of higher priority",
        "bh2": "waiting for a GPU: 2 busy, 2 job(s) ahead by fair share",
        "bn": "behind 2 job(s) of higher priority",
        "bp": "no live worker consumes pool 'h100'",
        "br": f"retrying after a failure: not before {backoff_ends.isoformat(timespec='seconds')}",
        "a1": "quota reached: project alpha runs 1 of its 1 GPUs; it borrows one when no other project waits",
        "a2": "quota reached: project alpha runs 1 of its 1 GPUs; it borrows one when no other project waits",
    }


def test_the_next_job_starts_when_a_gpu_is_free_and_none_does_without_workers(db: Database) -> None:
    ids = queue(db)
    free = explained(db, ids, [worker("w1"), worker("w2", current_job=None)])
    assert free["bh1"].reason == "starting: a GPU is free"
    assert free["g1"].reason == "behind 1 job(s) of higher priority"
    nobody = explained(db, ids, [worker("w1", current_job=None) | {"status": "offline"}])
    assert nobody["bh1"].reason == "no live worker consumes the training queue"
    assert nobody["bp"].reason == "no live worker consumes pool 'h100'"
    # An online worker that consumes only inference serves no training job either.
    inference_only = worker("w3", current_job=None) | {"queues": ["inference"]}
    assert explained(db, ids, [inference_only])["g1"].reason == "no live worker consumes the training queue"


def test_no_estimate_before_any_job_finished_then_one_from_recent_durations(db: Database) -> None:
    ids = queue(db)
    assert {p.estimated_start_seconds for p in explained(db, ids, BUSY).values()} == {None}

    finish_two_jobs(db, (100, 200))  # 150 s on average; 2 GPUs serve the line
    estimates = {name: pending.estimated_start_seconds for name, pending in explained(db, ids, BUSY).items()}
    # Places 1-2 start within the running jobs' (half) duration, 3-4 one duration later, and so on.
    assert estimates["bh1"] == estimates["g1"] == 75.0
    assert estimates["bh2"] == estimates["bn"] == 225.0
    assert estimates["a1"] == estimates["a2"] == 525.0
    assert estimates["bp"] is None  # no worker serves its pool
    # A retry does not start before its backoff ends, an hour from now.
    assert estimates["br"] is not None and 3590 < estimates["br"] <= 3600


def test_jobs_not_queued_are_not_explained(db: Database) -> None:
    ids = queue(db)
    with db.session() as s:
        running = s.scalar(select(TrainingJob.id).where(TrainingJob.status == JobStatus.RUNNING))
        assert running is not None
        assert scheduling.explain(s, [running], BUSY) == {}
        assert set(scheduling.explain(s, [running, ids["g1"]], BUSY)) == {ids["g1"]}


def test_a_whole_page_of_jobs_is_explained_as_each_job_alone(db: Database) -> None:
    # Many at once (the jobs list, /metrics) read the whole line; one at a time counts the job's place.
    ids = queue(db)
    ids |= named(db, "delta", [f"d{n}" for n in range(scheduling.COUNTED_UP_TO // 2)], priority=Priority.LOW)
    ids |= named(db, "gamma", [f"g{n}" for n in range(2, scheduling.COUNTED_UP_TO // 2)])
    ids |= named(db, "alpha", ["a-urgent"], priority=Priority.URGENT)
    together = explained(db, ids, BUSY)
    assert len(together) == len(ids) > scheduling.COUNTED_UP_TO
    assert together == {name: explained(db, {name: job_id}, BUSY)[name] for name, job_id in ids.items()}
    assert sorted(p.position for p in together.values()) == list(range(1, len(ids) + 1))
