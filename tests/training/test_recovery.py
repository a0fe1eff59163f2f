"""The reconciler: orphaned jobs get a new attempt (or fail when out of attempts), never stuck."""

from datetime import timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import select

from app.core.db import Database
from app.core.events import StaleAttempt
from app.models import JobEvent, TrainingJob
from app.models.base import utcnow
from app.training import reconcile, state
from app.training.reports import apply_report
from tests.factories import make_job
from tests.scheduling.workload import claim, complete
from trainyard_sdk.reports import ProgressReport

pytestmark = pytest.mark.integration


def _running(db: Database, attempt: int = 1) -> int:
    with db.session() as s:
        job = make_job(s)
        job.attempt = attempt
        job_id = job.id
    with db.session() as s:
        assert state.claim(s, job_id, attempt, "worker-a", ttl_seconds=30)
    return job_id


def _expire(db: Database, job_id: int) -> None:
    with db.session() as s:
        job = s.get(TrainingJob, job_id)
        assert job is not None
        job.lease_expires_at = utcnow() - timedelta(seconds=1)


def test_an_expired_lease_requeues_with_a_new_attempt(db: Database, redis_client: redis.Redis) -> None:
    job_id = _running(db)
    with db.session() as s:
        assert reconcile.requeue_expired_leases(s, max_attempts=3) == []  # lease still valid
    _expire(db, job_id)
    with db.session() as s:
        assert reconcile.requeue_expired_leases(s, max_attempts=3) == [job_id]
    with db.session() as s:
        job = s.get(TrainingJob, job_id)
        assert job is not None and (job.status, job.attempt, job.lease_owner) == ("queued", 2, None)
        last = s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq.desc())
        ).first()
        assert last is not None and last.data["requeued"] and "expired" in last.data["reason"]
    assert redis_client.llen("training") == 1, "the new attempt was not dispatched"
    # The old attempt can no longer write anything.
    with pytest.raises(StaleAttempt), db.session() as s:
        apply_report(s, job_id, 1, ProgressReport(epoch=1, epochs=2))


def test_out_of_attempts_fails_once_with_worker_lost(db: Database) -> None:
    job_id = _running(db, attempt=3)
    _expire(db, job_id)
    with db.session() as s:
        reconcile.requeue_expired_leases(s, max_attempts=3)
    with db.session() as s:
        job = s.get(TrainingJob, job_id)
        assert job is not None and (job.status, job.error_code) == ("failed", "WORKER_LOST")
        types = [e.type for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id))]
        assert types[-2:] == ["error", "status"]
    with db.session() as s:
        assert reconcile.requeue_expired_leases(s, max_attempts=3) == []


def test_a_duplicate_or_stale_message_claims_nothing(db: Database) -> None:
    job_id = _running(db)
    with db.session() as s:
        assert state.claim(s, job_id, 1, "worker-b", 30) is None  # duplicate delivery
        assert state.claim(s, job_id, 2, "worker-b", 30) is None  # no such attempt yet
    with db.session() as s:
        job = s.get(TrainingJob, job_id)
        assert job is not None and job.lease_owner == "worker-a"


def test_stale_queued_jobs_get_their_command_again(db: Database, redis_client: redis.Redis) -> None:
    with db.session() as s:
        job = make_job(s)
        job.dispatched_at = utcnow() - timedelta(minutes=10)
        job_id = job.id
    with db.session() as s:
        # No worker registry to go by: the queue still gets its wake-up.
        assert reconcile.redispatch_stale_queued(s, timedelta(minutes=5), []) == [job_id]
    assert redis_client.llen("training") == 1
    with db.session() as s:
        assert reconcile.redispatch_stale_queued(s, timedelta(minutes=5), []) == []


def registered(name: str, pool: str, status: str = "online") -> dict[str, Any]:
    """A training worker as the registry (app/core/workers.py) lists it."""
    return {"id": name, "queues": ["training"], "status": status, "pool": pool, "current_job": None}


def serve(db: Database, worker: str, pool: str) -> list[int]:
    """What a woken worker does (workers/runner.py `serve`): take the best job it may run, run it, and the
    next, until none is left; the jobs it ran."""
    ran = []
    while (job := claim(db, worker, pool)) is not None:
        complete(db, job)
        ran.append(job[0])
    return ran


def test_a_stale_backlog_wakes_each_queue_a_few_times_and_all_of_it_runs(
    db: Database, redis_client: redis.Redis
) -> None:
    long_ago = utcnow() - timedelta(minutes=10)
    with db.session() as s:
        backlog = [make_job(s, f"any-{n}", dispatched_at=long_ago).id for n in range(40)]
        backlog += [make_job(s, f"a100-{n}", pool="a100", dispatched_at=long_ago).id for n in range(10)]
    fleet = [registered("t4-0", "t4"), registered("t4-1", "t4"), registered("a100-0", "a100")]
    fleet.append(registered("t4-old", "t4", status="offline"))
    with db.session() as s:
        assert reconcile.redispatch_stale_queued(s, timedelta(minutes=5), fleet) == backlog
    with db.session() as s:  # their wait for a message started over
        assert reconcile.redispatch_stale_queued(s, timedelta(minutes=5), fleet) == []

    # One wake-up per online worker of each queue (all three consume the shared one), not one per job.
    assert (redis_client.llen("training"), redis_client.llen("training.a100")) == (3, 1)
    # Each woken worker drains what it may run: the whole backlog runs, once.
    ran = [job for _ in range(redis_client.llen("training")) for job in serve(db, "t4-0", "t4")]
    ran += [job for _ in range(redis_client.llen("training.a100")) for job in serve(db, "a100-0", "a100")]
    assert sorted(ran) == backlog


def test_a_message_for_a_deleted_job_claims_nothing(db: Database) -> None:
    with db.session() as s:
        assert state.claim(s, 424242, 1, "worker-a", 30) is None
