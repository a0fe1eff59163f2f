"""The event recorder against real databases and a real Redis."""

import json
import threading

import pytest
import redis
from sqlalchemy import select

from app.core.db import Database
from app.core.events import EventType, StaleAttempt, events_after, lock_job, record_event
from app.core.redis import job_channel
from app.models import JobEvent, TrainingLog
from tests.factories import make_job

pytestmark = pytest.mark.integration


def test_seq_is_contiguous_and_published_after_commit(db: Database, redis_client: redis.Redis) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(job_channel(job_id))
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    with db.session() as s:
        job = lock_job(s, job_id)
        record_event(s, job, EventType.PROGRESS, {"epoch": 1, "total": 2})
        record_event(s, job, EventType.LOG, {"level": "info", "message": "hello"})
        assert pubsub.get_message(timeout=0.3) is None, "published before the commit"
    messages = [pubsub.get_message(timeout=2) for _ in range(2)]
    envelopes = [json.loads(m["data"]) for m in messages if m]
    assert [e["seq"] for e in envelopes] == [2, 3]
    assert set(envelopes[0]) == {"job_id", "seq", "type", "ts", "data"}
    assert envelopes[1]["type"] == "log"
    with db.session() as s:
        assert [e.seq for e in events_after(s, job_id, 0)] == [1, 2, 3]
        log = s.scalars(select(TrainingLog).where(TrainingLog.job_id == job_id)).one()
        assert (log.level, log.message) == ("INFO", "hello")


def test_rollback_stores_and_publishes_nothing(db: Database, redis_client: redis.Redis) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(job_channel(job_id))
    pubsub.get_message(timeout=1)
    with pytest.raises(RuntimeError), db.session() as s:
        record_event(s, lock_job(s, job_id), EventType.PROGRESS, {"epoch": 1})
        raise RuntimeError("boom")
    assert pubsub.get_message(timeout=0.5) is None
    with db.session() as s:
        assert [e.seq for e in events_after(s, job_id, 0)] == [1]
        # The next event takes seq 2: the rolled-back one left no hole.
        record_event(s, lock_job(s, job_id), EventType.PROGRESS, {"epoch": 1})
    with db.session() as s:
        assert [e.seq for e in events_after(s, job_id, 0)] == [1, 2]


def test_stale_attempt_is_refused(db: Database) -> None:
    with db.session() as s:
        job = make_job(s)
        job.attempt = 2
        job_id = job.id
    with pytest.raises(StaleAttempt), db.session() as s:
        lock_job(s, job_id, attempt=1)
    with db.session() as s:
        assert lock_job(s, job_id, attempt=2).attempt == 2


def test_concurrent_writers_never_share_a_seq(db: Database) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(10):
                with db.session() as s:
                    record_event(s, lock_job(s, job_id), EventType.LOG, {"message": str(i)})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db.session() as s:
        seqs = list(s.scalars(select(JobEvent.seq).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))
    assert seqs == list(range(1, 42))


def test_a_failed_savepoint_keeps_the_commands_of_the_transaction(
    db: Database, redis_client: redis.Redis
) -> None:
    from sqlalchemy.exc import IntegrityError

    from app.core.db import on_commit
    from app.models import Project

    sent: list[str] = []
    with db.session() as s:
        on_commit(s, lambda: sent.append("command"))
        s.add(Project(name="p", slug="p"))
        s.flush()
        with pytest.raises(IntegrityError), s.begin_nested():
            s.add(Project(name="p", slug="p"))
    assert sent == ["command"]
    with pytest.raises(RuntimeError), db.session() as s:
        on_commit(s, lambda: sent.append("dropped"))
        raise RuntimeError("rolled back")
    assert sent == ["command"]
