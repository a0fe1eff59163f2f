"""The job lifecycle (app/training/state.py): the transition table, each target state's effects, and the
named refusals of users' actions, on a real database (both parametrizations), without any worker."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import Database
from app.core.errors import AppError
from app.core.events import StaleAttempt, lock_job
from app.core.jobs import ACTIVE, TERMINAL, JobStatus
from app.core.security import job_token, token_hash
from app.models import JobEvent, RegisteredModel, TrainingJob
from app.models.base import utcnow
from app.training import state
from app.training.reports import apply_report
from tests.factories import make_job
from trainyard_sdk.reports import CheckpointReport, MetricsReport

Q, R, S = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.STOPPING
C, F, ST, X = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELLED
ALLOWED = {
    (Q, R),
    (Q, X),
    (Q, F),
    (R, C),
    (R, F),
    (R, S),
    (R, ST),
    (R, Q),  # worker lost, handed back or retried: a new attempt
    (S, ST),
    (S, C),
    (S, F),
    (S, Q),
    (ST, Q),  # resumed
    (F, Q),  # resumed
}
PAIRS = [(a, b) for a in JobStatus for b in JobStatus]


@pytest.mark.parametrize(("current", "target"), PAIRS)
def test_the_table_allows_exactly_the_documented_moves(current: JobStatus, target: JobStatus) -> None:
    assert state.can_transition(current, target) == ((current, target) in ALLOWED)


def test_terminal_states_change_only_by_resume() -> None:
    for terminal in TERMINAL:
        resumable = terminal in {ST, F}
        assert [t for t in JobStatus if state.can_transition(terminal, t)] == ([Q] if resumable else [])


def job_in(db: Database, status: JobStatus, **fields: Any) -> int:
    """A job arranged in `status` (leased to worker-a when active)."""
    with db.session() as s:
        job = make_job(s, **fields)
        job.status = status
        if status in ACTIVE:
            job.lease_owner = "worker-a"
            job.lease_expires_at = utcnow()
        return job.id


def statuses(db: Database, job_id: int) -> list[dict[str, Any]]:
    with db.session() as s:
        stmt = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        return [{"type": e.type, **e.data} for e in s.scalars(stmt)]


def move(db: Database, job_id: int, target: JobStatus, **kwargs: Any) -> TrainingJob:
    with db.session() as s:
        job = lock_job(s, job_id)
        state.transition(s, job, target, **kwargs)
        s.expunge(job)
        return job


@pytest.mark.parametrize(("current", "target"), [p for p in PAIRS if p not in ALLOWED])
def test_a_forbidden_move_raises_and_changes_nothing(
    db: Database, current: JobStatus, target: JobStatus
) -> None:
    job_id = job_in(db, current)
    before = statuses(db, job_id)
    with pytest.raises(state.InvalidTransition, match=f"a {current} job cannot become {target}"):
        move(db, job_id, target)
    assert statuses(db, job_id) == before


@pytest.mark.parametrize("current", [R, S, ST, F])
def test_to_queued_starts_the_next_attempt_clean(db: Database, current: JobStatus) -> None:
    job_id = job_in(db, current, error_code="OOM", error_message="boom", finished_at=utcnow())
    job = move(db, job_id, Q, reason="test")
    assert (job.status, job.attempt, job.lease_owner, job.lease_expires_at) == (Q, 2, None, None)
    assert (job.error_code, job.error_message, job.finished_at) == (None, None, None)
    assert job.dispatched_at is not None  # its command goes out once the transaction commits
    assert statuses(db, job_id)[-1] == {"type": "status", "status": "queued", "attempt": 2, "reason": "test"}


def test_to_running_takes_the_lease_and_rotates_the_token(db: Database) -> None:
    job_id = job_in(db, Q, attempt=3)
    job = move(db, job_id, R, owner="worker-b", host="box-b", ttl_seconds=30)
    assert job.lease_owner == "worker-b" and job.lease_expires_at is not None
    assert job.started_at is not None
    assert job.callback_token_hash == token_hash(job_token(job_id, 3))
    assert statuses(db, job_id)[-1] == {
        "type": "status",
        "status": "running",
        "attempt": 3,
        "worker": "worker-b",
        "host": "box-b",
    }
    (placed,) = job.attempts or []
    assert placed["started_at"] == job.started_at.isoformat()
    assert placed == {**placed, "attempt": 3, "worker": "worker-b", "host": "box-b", "ended_at": None}
    assert job.host == "box-b"


@pytest.mark.parametrize(("current", "target"), sorted((a, b) for a, b in ALLOWED if b in TERMINAL))
def test_a_terminal_state_ends_the_attempt(db: Database, current: JobStatus, target: JobStatus) -> None:
    job_id = job_in(db, current)
    extra: dict[str, Any] = {"error": ("OOM", "out of memory")} if target == F else {}
    job = move(db, job_id, target, **extra)
    assert job.finished_at is not None
    assert (job.lease_owner, job.lease_expires_at) == (None, None)
    events = statuses(db, job_id)
    assert events[-1]["status"] == target
    if target == F:
        assert (job.error_code, job.error_message) == ("OOM", "out of memory")
        assert events[-2] == {"type": "error", "code": "OOM", "message": "out of memory"}


def test_stop_and_completion_register_a_model_with_its_best_epoch(db: Database) -> None:
    job_id = job_in(db, R)
    with db.session() as s:
        for epoch in (1, 2):
            apply_report(
                s,
                job_id,
                1,
                MetricsReport(epoch=epoch, train={"loss": 1 / epoch}, val={"mAP50": 0.1 * epoch}),
            )
        best = CheckpointReport(kind="best", path="projects/demo/x/best.pt", epoch=2, metrics={"mAP50": 0.2})
        apply_report(s, job_id, 1, best)
    with db.session() as s:
        # What a resumed attempt that found nothing left to train says: nothing about metrics.
        state.complete(s, job_id, 1, {"epochs_completed": 2})
    with db.session() as s:
        job = s.get_one(TrainingJob, job_id)
        assert job.results == {
            "epochs_completed": 2,
            "best_epoch": 2,
            "best_metrics": {"mAP50": 0.2},
            "final_metrics": {"mAP50": 0.2},
        }
        model = s.scalar(select(RegisteredModel).where(RegisteredModel.job_id == job_id))
        assert model is not None and model.best_epoch == 2 and model.metrics == {"mAP50": 0.2}


# Users' actions and their named refusals ---------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        (ST, "stop", "training job {id} is stopped: a stopped job cannot be stopped again"),
        (X, "stop", "a cancelled job cannot be stopped"),
        (C, "stop", "a completed job cannot be stopped"),
        (F, "stop", "a failed job cannot be stopped"),
        (X, "cancel", "a cancelled job cannot be cancelled again"),
        (R, "cancel", "a running job cannot be cancelled (stop a running job instead)"),
        (S, "cancel", "a stopping job cannot be cancelled"),
        (C, "cancel", "a completed job cannot be cancelled"),
        (Q, "resume", "a queued job cannot be resumed (only a stopped or failed job can)"),
        (R, "resume", "a running job cannot be resumed"),
        (C, "resume", "a completed job cannot be resumed"),
        (X, "resume", "a cancelled job cannot be resumed"),
    ],
)
def test_a_refused_action_is_409_saying_why_and_changes_nothing(
    db: Database, status: JobStatus, action: str, message: str
) -> None:
    job_id = job_in(db, status)
    before = statuses(db, job_id)
    act = {"stop": state.stop_job, "cancel": state.cancel_job, "resume": state.resume_job}[action]
    with pytest.raises(AppError) as refused, db.session() as s:
        act(s, job_id)
    assert (refused.value.status, refused.value.code) == (409, "INVALID_TRANSITION")
    assert message.format(id=job_id) in refused.value.detail
    assert statuses(db, job_id) == before


@pytest.mark.parametrize(
    ("status", "action", "after"),
    [(Q, "stop", X), (R, "stop", S), (S, "stop", S), (Q, "cancel", X), (ST, "resume", Q), (F, "resume", Q)],
)
def test_an_allowed_action_moves_the_job(
    db: Database, status: JobStatus, action: str, after: JobStatus
) -> None:
    job_id = job_in(db, status)
    act = {"stop": state.stop_job, "cancel": state.cancel_job, "resume": state.resume_job}[action]
    with db.session() as s:
        assert act(s, job_id).status == after


# Workers' actions ----------------------------------------------------------------------------------
def test_a_claim_for_another_attempt_or_a_missing_job_takes_nothing(db: Database) -> None:
    job_id = job_in(db, Q)
    with db.session() as s:
        assert state.claim(s, job_id, 2, "worker-a", 30) is None
        assert state.claim(s, 424242, 1, "worker-a", 30) is None
    with db.session() as s:
        assert state.claim(s, job_id, 1, "worker-a", 30) is not None
    with db.session() as s:
        assert state.claim(s, job_id, 1, "worker-b", 30) is None  # a duplicate message


def test_each_attempt_records_where_it_ran_and_how_it_ended(db: Database, client: TestClient) -> None:
    """Attempt 1 is lost (requeued by the reconciler), attempt 2 completes elsewhere; the stale worker of
    attempt 1 can no longer write, so the record of attempt 2 stays as its worker left it."""
    job_id = job_in(db, Q)
    with db.session() as s:
        state.claim(s, job_id, 1, "worker-a", 30, host="box-a")
    with db.session() as s:
        state.requeue(s, lock_job(s, job_id), "lease of worker worker-a expired", max_attempts=3)
    queued = client.get(f"/api/v1/training/jobs/{job_id}").json()
    assert queued["host"] is None  # attempt 2 has not been claimed yet
    with db.session() as s:
        state.claim(s, job_id, 2, "worker-b", 30, host="box-b")
    with pytest.raises(StaleAttempt), db.session() as s:
        state.complete(s, job_id, 1, {})  # the worker of attempt 1 wakes up
    with db.session() as s:
        state.complete(s, job_id, 2, {})

    job = client.get(f"/api/v1/training/jobs/{job_id}").json()
    assert job["host"] == "box-b"
    placed = [(a["attempt"], a["worker"], a["host"], a["outcome"]) for a in job["attempts"]]
    assert placed == [(1, "worker-a", "box-a", "requeued"), (2, "worker-b", "box-b", "completed")]
    first, second = job["attempts"]
    assert first["started_at"] <= first["ended_at"] <= second["started_at"] <= second["ended_at"]


def test_a_job_older_than_the_record_reads_as_no_attempts(db: Database, client: TestClient) -> None:
    job_id = job_in(db, R)  # what the migration leaves on a running job: no record
    with db.session() as s:
        s.get_one(TrainingJob, job_id).attempts = None
    assert client.get(f"/api/v1/training/jobs/{job_id}").json()["attempts"] == []
    move(db, job_id, C, results={})  # ending an attempt nobody recorded changes nothing
    job = client.get(f"/api/v1/training/jobs/{job_id}").json()
    assert (job["status"], job["attempts"], job["host"]) == ("completed", [], None)


def test_only_the_lease_owner_renews(db: Database) -> None:
    job_id = job_in(db, R)
    with pytest.raises(StaleAttempt), db.session() as s:
        state.renew_lease(s, job_id, 1, "worker-b", 30)
    with db.session() as s:
        assert state.renew_lease(s, job_id, 1, "worker-a", 30) == R


@pytest.mark.parametrize(
    ("code", "attempt", "after"),
    [("TRANSIENT_ERROR", 1, Q), ("TRAINER_CRASHED", 2, Q), ("TRANSIENT_ERROR", 3, F), ("OOM", 1, F)],
)
def test_fail_or_retry(db: Database, code: str, attempt: int, after: JobStatus) -> None:
    job_id = job_in(db, R, attempt=attempt)
    with db.session() as s:
        state.fail_or_retry(s, job_id, attempt, code, "it broke", max_attempts=3, backoff_seconds=1)
    with db.session() as s:
        job = s.get_one(TrainingJob, job_id)
        assert job.status == after
        assert job.error_code == (code if after == F else None)
    error = next(e for e in reversed(statuses(db, job_id)) if e["type"] == "error")
    assert error["code"] == code and error.get("retrying", False) == (after == Q)


def test_a_lost_job_out_of_attempts_fails_as_worker_lost(db: Database) -> None:
    job_id = job_in(db, R, attempt=3)
    with db.session() as s:
        state.requeue(s, lock_job(s, job_id), "lease expired", max_attempts=3)
    with db.session() as s:
        job = s.get_one(TrainingJob, job_id)
        assert (job.status, job.error_code) == (F, "WORKER_LOST")
        assert job.error_message == "lease expired; gave up after 3 attempts"


def test_hand_back_requeues_without_a_penalty(db: Database) -> None:
    job_id = job_in(db, R, attempt=5)
    with db.session() as s:
        state.hand_back(s, job_id, 5, "worker shut down")
    event = statuses(db, job_id)[-1]
    assert event == {
        "type": "status",
        "status": "queued",
        "attempt": 6,
        "reason": "worker shut down",
        "requeued": True,
        "previous_worker": "worker-a",
    }


@pytest.mark.parametrize("status", [C, F, ST, X, Q])
def test_a_finished_or_unclaimed_job_refuses_the_workers_reports(db: Database, status: JobStatus) -> None:
    job_id = job_in(db, status)
    with pytest.raises(state.JobFinished), db.session() as s:
        state.complete(s, job_id, 1, {})
