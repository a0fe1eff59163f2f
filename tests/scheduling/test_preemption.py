"""Urgent work takes back borrowed GPUs (app/training/reconcile.py `reclaim_borrowed`), and a preempted job
goes back to the queue (app/training/state.py `stopped`), on SQLite and PostgreSQL."""

from datetime import timedelta
from pathlib import Path

import pytest

from app.core.db import Database
from app.core.jobs import JobStatus
from app.core.settings import get_settings
from app.models import TrainingJob
from app.scheduling.priorities import Priority, preempt_priority
from app.training import reconcile, state
from tests.conftest import clear_caches
from tests.scheduling.workload import (
    attempts,
    claim,
    configure_project,
    hold_until,
    named,
    names,
    status_events,
    submit,
)

pytestmark = pytest.mark.integration
GRACE = timedelta(seconds=60)


@pytest.fixture
def preempt_for(env: Path, monkeypatch: pytest.MonkeyPatch) -> Priority | None:
    """What the reconciler reads from TRAINYARD_PREEMPT_FOR=urgent."""
    monkeypatch.setenv("TRAINYARD_PREEMPT_FOR", "urgent")
    clear_caches()
    return preempt_priority(get_settings().preempt_for)


def reclaim(db: Database, preempt_for: Priority | None) -> list[str]:
    with db.session() as s:
        preempted = reconcile.reclaim_borrowed(s, preempt_for, GRACE)
    return names(db, preempted)


def fleet_with_borrowers(db: Database) -> dict[str, int]:
    """Five GPUs busy: eager and borrower each run one job within their quota of 1 and borrow one more;
    steady runs a low-priority job within its quota of 2. By job name: its id."""
    configure_project(db, "steady", quota=2)
    configure_project(db, "borrower", quota=1)
    configure_project(db, "eager", quota=1)
    ids = named(db, "steady", ["st-low"], priority=Priority.LOW) | named(db, "borrower", ["bw-1", "bw-2"])
    ids |= named(db, "eager", ["eg-1", "eg-2"], priority=Priority.HIGH)
    started = [claim(db, f"w{i}") for i in range(1, 6)]
    assert names(db, [job[0] for job in started if job]) == ["eg-1", "bw-1", "st-low", "eg-2", "bw-2"]
    borrowed = {name for name, job_id in ids.items() if attempts(db, job_id)[-1]["borrowed"]}
    assert borrowed == {"eg-2", "bw-2"}
    return ids


def fire_preempts_bw2(db: Database, preempt_for: Priority | None) -> tuple[dict[str, int], int]:
    """The fleet with borrowers, and an urgent job past its grace that has bw-2 give its GPU back."""
    ids = fleet_with_borrowers(db)
    (fire,) = submit(db, "oncall", ["fire"], priority=Priority.URGENT)
    hold_until(db, fire, -GRACE.total_seconds() - 1)
    assert reclaim(db, preempt_for) == ["bw-2"]
    return ids, fire


def test_an_urgent_job_past_its_grace_stops_the_lowest_priority_borrowed_job_once(
    db: Database, preempt_for: Priority | None
) -> None:
    ids = fleet_with_borrowers(db)
    (fire,) = submit(db, "oncall", ["fire"], priority=Priority.URGENT)
    (hot,) = submit(db, "oncall", ["hot"], priority=Priority.HIGH)  # high does not preempt (urgent does)
    assert reclaim(db, preempt_for) == []  # within its grace a GPU may still come free
    hold_until(db, fire, -GRACE.total_seconds() - 1)
    hold_until(db, hot, -GRACE.total_seconds() - 1)

    # bw-2 (normal) rather than eg-2 (high); never st-low, lower still but within its project's quota.
    assert reclaim(db, preempt_for) == ["bw-2"]
    with db.session() as s:
        victim = s.get_one(TrainingJob, ids["bw-2"])
        assert (victim.status, victim.preempt_requested) == (JobStatus.STOPPING, True)
        assert status_events(s, victim.id)[-1] == {
            "status": "stopping",
            "attempt": 1,
            "requested_by": "scheduler",
            "preempted_for": fire,
        }
    # While bw-2 gives its GPU back, the urgent job has its room: nothing more is stopped for it.
    assert reclaim(db, preempt_for) == []


def test_a_preempted_job_is_queued_again_and_its_gpu_goes_to_the_urgent_job(
    db: Database, preempt_for: Priority | None
) -> None:
    ids, fire = fire_preempts_bw2(db, preempt_for)

    with db.session() as s:
        state.stopped(s, ids["bw-2"], 1)  # its trainer stopped after the step, keeping its checkpoint
    with db.session() as s:
        victim = s.get_one(TrainingJob, ids["bw-2"])
        assert (victim.status, victim.attempt, victim.preempt_requested) == (JobStatus.QUEUED, 2, False)
        assert status_events(s, victim.id)[-1] == {
            "status": "queued",
            "attempt": 2,
            "preempted": True,
            "reason": "preempted",
            "from_checkpoint": None,
        }
    assert [entry["outcome"] for entry in attempts(db, ids["bw-2"])] == ["requeued"]  # not failed
    # The freed worker takes the urgent job; the preempted one waits for a GPU nobody needs.
    assert claim(db, "w5") == (fire, 1)
    assert claim(db, "w6") == (ids["bw-2"], 2)


def test_an_urgent_job_that_needs_a_pool_stops_a_borrowed_job_running_in_it(
    db: Database, preempt_for: Priority | None
) -> None:
    configure_project(db, "lender", quota=0)  # every job it runs is borrowed
    on_a100, on_t4 = submit(db, "lender", ["on-a100", "on-t4"])
    assert claim(db, "a100-worker", pool="a100") == (on_a100, 1)
    assert claim(db, "t4-worker", pool="t4") == (on_t4, 1)
    with db.session() as s:
        s.get_one(TrainingJob, on_t4).priority = Priority.LOW

    urgent = submit(db, "oncall", ["fire-a100"], priority=Priority.URGENT, pool="a100")
    urgent += submit(db, "oncall", ["fire-anywhere"], priority=Priority.URGENT)
    for job_id in urgent:
        hold_until(db, job_id, -GRACE.total_seconds() - 1)
    # fire-a100 needs the a100 GPU: on-a100 (its job needs no pool) is stopped, although on-t4 is lower;
    # fire-anywhere then takes on-t4's.
    assert reclaim(db, preempt_for) == ["on-a100", "on-t4"]


def test_without_preempt_for_nothing_is_stopped(db: Database) -> None:
    fleet_with_borrowers(db)
    (fire,) = submit(db, "oncall", ["fire"], priority=Priority.URGENT)
    hold_until(db, fire, -3600)
    assert preempt_priority(get_settings().preempt_for) is None  # TRAINYARD_PREEMPT_FOR unset
    assert reclaim(db, None) == []


def test_a_user_who_stops_a_job_being_preempted_gets_it_stopped_not_requeued(
    db: Database, preempt_for: Priority | None
) -> None:
    ids, _ = fire_preempts_bw2(db, preempt_for)
    with db.session() as s:
        state.stop_job(s, ids["bw-2"])  # its owner stops it too, before its trainer reacts
    with db.session() as s:
        state.stopped(s, ids["bw-2"], 1)
    with db.session() as s:
        assert s.get_one(TrainingJob, ids["bw-2"]).status == JobStatus.STOPPED
