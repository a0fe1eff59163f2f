"""Claims at the database (app/training/state.py `claim_next` over app/scheduling/service.py): which queued
job a free worker takes, on SQLite and PostgreSQL, with simulated workers and no process."""

import threading
from collections import Counter

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.core.db import Database
from app.core.errors import ErrorCode
from app.core.jobs import JobStatus
from app.models import SchedulerState, TrainingJob
from app.scheduling import service as scheduling
from app.scheduling.priorities import Priority
from app.scheduling.service import SchedulerStateMissing
from app.training import state
from tests.scheduling.workload import (
    attempts,
    claim,
    complete,
    configure_project,
    hold_until,
    names,
    status_events,
    submit,
)

pytestmark = pytest.mark.integration


def test_two_workers_start_thirty_jobs_in_the_order_of_fair_share_priority_and_age(db: Database) -> None:
    configure_project(db, "vision", weight=3)
    configure_project(db, "speech", weight=2)
    configure_project(db, "nlp", weight=1)
    submit(db, "vision", [f"v{i:02}" for i in range(1, 13)])
    submit(db, "speech", [f"s{i:02}" for i in range(1, 11)])
    submit(db, "nlp", [f"n{i:02}" for i in range(1, 6)])
    submit(db, "nlp", ["n-high-1", "n-high-2", "n-high-3"], priority=Priority.HIGH)

    # A claims, B claims, A completes and claims, B completes and claims, ... until the queue is empty.
    started: list[int] = []
    running: dict[str, tuple[int, int] | None] = {"A": None, "B": None}
    while True:
        for worker in ("A", "B"):
            if (done := running[worker]) is not None:
                complete(db, done)
            running[worker] = job = claim(db, worker)
            if job is not None:
                started.append(job[0])
        if running == {"A": None, "B": None}:
            break

    # Every claim after the first is made while exactly one job runs: the other worker's. Its project has
    # 1 running; the other two have 0 and tie on running share, so the tie goes to the fewest jobs started
    # in the last hour per unit of weight (vision 3, speech 2, nlp 1), then to priority, then to age:
    # - the first claim sees nothing started anywhere: nlp's high jobs win on priority;
    # - from then on the starts follow the weights: every 6 starts are 3 vision, 2 speech, 1 nlp
    #   (the first 12: n-high-1, 6 v, 4 s, n-high-2), nlp's high jobs before its normal ones;
    # - once vision and speech run low, nlp's normal jobs fill in, and finish the queue.
    assert names(db, started) == [
        "n-high-1", "v01", "s01", "v02", "s02", "v03",
        "n-high-2", "v04", "s03", "v05", "s04", "v06",
        "n-high-3", "v07", "s05", "v08", "s06", "v09",
        "s07", "v10", "n01", "v11", "s08", "v12",
        "s09", "n02", "s10", "n03", "n04", "n05",
    ]  # fmt: skip
    assert len(set(started)) == 30
    with db.session() as s:
        assert set(s.scalars(select(TrainingJob.status))) == {JobStatus.COMPLETED}


def test_six_free_gpus_split_by_share_weight(db: Database) -> None:
    configure_project(db, "vision", weight=3)
    configure_project(db, "speech", weight=2)
    configure_project(db, "nlp", weight=1)
    for project in ("vision", "speech", "nlp"):
        submit(db, project, [f"{project}-{i}" for i in range(1, 5)])
    started = [claim(db, f"w{i}") for i in range(6)]
    # Running per weight before each claim (vision, speech, nlp): (0, 0, 0) age: vision; (1/3, 0, 0)
    # speech; (1/3, 1/2, 0) nlp; (1/3, 1/2, 1) vision; (2/3, 1/2, 1) speech; (2/3, 1, 1) vision.
    # Six GPUs end up 3/2/1, as the weights say.
    assert names(db, [job[0] for job in started if job]) == [
        "vision-1",
        "speech-1",
        "nlp-1",
        "vision-2",
        "speech-2",
        "vision-3",
    ]


def test_a_project_at_its_quota_borrows_only_when_no_project_within_quota_has_a_job_for_the_gpu(
    db: Database,
) -> None:
    configure_project(db, "capped", quota=1)
    capped = submit(db, "capped", ["c1", "c2", "c3"], priority=Priority.HIGH)  # older and higher
    submit(db, "open", ["o1", "o2"])
    submit(db, "open", ["o-a100"], pool="a100")

    first = [claim(db, "w1"), claim(db, "w2"), claim(db, "w3")]
    # c1 wins the first GPU on priority; at its quota then, capped waits while open has jobs.
    assert names(db, [job[0] for job in first if job]) == ["c1", "o1", "o2"]
    # open's last job needs an a100: on an a100 GPU it still goes first, without borrowing ...
    a100 = claim(db, "w4", pool="a100")
    assert a100 is not None and names(db, [a100[0]]) == ["o-a100"]
    # ... and a GPU no project within quota has a job for is lent to capped.
    lent = claim(db, "w5")
    assert lent == (capped[1], 1)

    assert [entry["borrowed"] for entry in attempts(db, capped[0])] == [False]
    assert [entry["borrowed"] for entry in attempts(db, capped[1])] == [True]
    with db.session() as s:
        assert status_events(s, capped[1])[-1] == {
            "status": "running",
            "attempt": 1,
            "worker": "w5",
            "host": "host-w5",
            "borrowed": True,
        }


def test_a_pool_requirement_routes_the_job_and_jobs_without_one_go_anywhere(db: Database) -> None:
    anywhere = submit(db, "demo", ["any-1", "any-2"])
    (big,) = submit(db, "demo", ["needs-a100"], pool="a100")

    assert claim(db, "t4-worker", pool="t4") == (anywhere[0], 1)
    assert claim(db, "t4-worker-2", pool="t4") == (anywhere[1], 1)
    # Left: only the a100 job, which no t4 worker and no pool-less worker may take.
    assert claim(db, "t4-worker-3", pool="t4") is None
    assert claim(db, "plain-worker") is None
    assert claim(db, "a100-worker", pool="a100") == (big, 1)
    assert [(a["worker"], a["pool"]) for a in attempts(db, big)] == [("a100-worker", "a100")]

    # An a100 worker takes jobs that need no pool as well.
    (later,) = submit(db, "demo", ["any-3"])
    assert claim(db, "a100-worker-2", pool="a100") == (later, 1)


def test_a_retry_is_not_claimed_before_its_backoff_ends(db: Database) -> None:
    retried, fresh = submit(db, "demo", ["flaky", "fresh"])
    assert claim(db, "w1") == (retried, 1)
    with db.session() as s:
        state.fail_or_retry(
            s, retried, 1, ErrorCode.TRANSIENT_ERROR, "hiccup", max_attempts=3, backoff_seconds=300
        )
    # Older, the retry would go first; during its backoff the younger job goes, then nothing.
    assert claim(db, "w1") == (fresh, 1)
    assert claim(db, "w2") is None
    hold_until(db, retried, -1)  # the backoff is over
    assert claim(db, "w2") == (retried, 2)


def test_two_workers_racing_never_take_the_same_job_and_take_them_all(db: Database) -> None:
    for project in ("alpha", "beta"):
        submit(db, project, [f"{project}-{i}" for i in range(10)])
    taken: dict[str, list[int]] = {"A": [], "B": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        start.wait()
        try:
            while (job := claim(db, name)) is not None:
                taken[name].append(job[0])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    claims = Counter(taken["A"] + taken["B"])
    assert len(claims) == 20 and set(claims.values()) == {1}
    with db.session() as s:
        jobs = list(s.scalars(select(TrainingJob)))
    assert {job.status for job in jobs} == {JobStatus.RUNNING}
    assert all(len(job.attempts or []) == 1 for job in jobs)
    # Each job's one attempt names the worker that took it.
    owner = {job_id: name for name, ids in taken.items() for job_id in ids}
    assert all(job.lease_owner == owner[job.id] for job in jobs)


def test_without_its_mutex_row_the_scheduler_decides_nothing(db: Database) -> None:
    (job_id,) = submit(db, "demo", ["run"])
    with db.session() as s:
        s.execute(delete(SchedulerState))
    # An UPDATE of no row would lock nothing: two workers could then take one job.
    with pytest.raises(SchedulerStateMissing), db.session() as s:
        state.claim_next(s, "w1", 60)
    with db.session() as s:
        assert s.get_one(TrainingJob, job_id).status == JobStatus.QUEUED


def test_a_job_cancelled_between_the_pick_and_the_lock_is_passed_over(
    db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's write lock keeps any other writer out while the scheduler decides")
    first, second = submit(db, "demo", ["first", "second"])
    pick = scheduling.pick

    def pick_then_the_user_cancels(session: Session, pool: str | None) -> tuple[int, bool] | None:
        picked = pick(session, pool)
        if picked is not None and picked[0] == first:
            with db.session() as user:  # PostgreSQL reads committed rows: the worker's lock sees this
                state.cancel_job(user, first)
        return picked

    monkeypatch.setattr(scheduling, "pick", pick_then_the_user_cancels)
    assert claim(db, "w1") == (second, 1)
    with db.session() as s:
        assert s.get_one(TrainingJob, first).status == JobStatus.CANCELLED
