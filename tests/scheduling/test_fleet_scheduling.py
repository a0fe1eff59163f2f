"""Fair GPU scheduling end to end (issue 17): the real API, scheduler and two workers with simulated GPUs
(`TRAINYARD_SIMULATE_GPU`) in pools a and b, PostgreSQL and a Redis of the stack's own, running the plain
PyTorch trainer.

Every trainer stops at the end of each epoch until the test releases its job (the fault injector's gate,
tests/support/inject/sitecustomize.py), so a job holds its GPU exactly as long as the test says: jobs end
one at a time, in the order the test chooses, and each freed GPU starts exactly one job. Start orders are
therefore exact, not timed.
"""

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_postgres
from tests.support.fleet import (
    LEASE,
    Fleet,
    assert_contiguous,
    progress_epochs,
    statuses,
    terminal_count,
    with_injector,
)
from tests.support.stack import create_key, free_port, stop, wait_for, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# name: (simulated GPU, pool). Jobs that need no pool run on any of them.
WORKERS = {"gpu-a": ("0", "a"), "gpu-b": ("1", "b")}
JOBS = "/api/v1/training/jobs"


@dataclass
class Yard:
    fleet: Fleet
    gate: Path  # where trainers wait for `release-<job id>`
    http: httpx.Client  # the API, with an admin key
    schedulers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # Projects and jobs -----------------------------------------------------------------------------
    def project(self, name: str, **scheduling: Any) -> None:
        """Create a project and PATCH its GPU quota or share weight (admin key)."""
        response = self.http.post("/api/v1/projects", json={"name": name})
        assert response.status_code == 201, response.text
        if scheduling:
            response = self.http.patch(f"/api/v1/projects/{response.json()['id']}", json=scheduling)
            assert response.status_code == 200, response.text
            assert {k: response.json()[k] for k in scheduling} == scheduling

    def submit(self, name: str, project: str, epochs: int = 1, **scheduling: str) -> int:
        response = self.post_job(name, project, epochs, **scheduling)
        assert response.status_code == 201, response.text
        job_id: int = response.json()["id"]
        return job_id

    def post_job(self, name: str, project: str, epochs: int = 1, **scheduling: str) -> httpx.Response:
        body = {
            "name": name,
            "project": project,
            "framework": "pytorch",
            "task_type": "classification",
            "model_name": "mlp",
            "config": {"epochs": epochs},
            **scheduling,
        }
        return self.http.post(JOBS, json=body)

    def job(self, job_id: int) -> dict[str, Any]:
        return self.fleet.job(job_id)

    def jobs(self, **query: str) -> dict[int, dict[str, Any]]:
        page = self.http.get(JOBS, params={"limit": 500, **query}).json()
        return {job["id"]: job for job in page["items"]}

    def running(self) -> set[int]:
        return set(self.jobs(status="running"))

    # Holding and releasing GPUs --------------------------------------------------------------------
    def release(self, *job_ids: int) -> None:
        """Let these jobs' trainers go past the gate (now or when they reach it) and finish."""
        for job_id in job_ids:
            (self.gate / f"release-{job_id}").touch()

    def wait_at_gate(self, job_id: int, attempt: int) -> None:
        """Until that attempt's trainer ended an epoch (its checkpoints are stored) and waits."""
        at_gate = self.gate / f"at-gate-{job_id}-{attempt}"
        self.wait(at_gate.exists, f"job {job_id} attempt {attempt} at the gate")

    def wait_running(self, job_ids: Iterable[int]) -> None:
        wanted = set(job_ids)
        self.wait(lambda: wanted <= self.running(), f"jobs {sorted(wanted)} running")

    def waiting(self, job_id: int, kind: str) -> dict[str, Any]:
        """The job's `waiting` once it gives reason `kind`: the worker registry, which the reason reads
        (a free GPU?), follows a claim by a moment."""

        def given() -> dict[str, Any] | None:
            waiting = self.job(job_id).get("waiting") or {}
            return waiting if waiting.get("kind") == kind else None

        found: dict[str, Any] = self.wait(given, f"job {job_id} waiting for reason {kind}")
        return found

    def next_start(self, started: set[int]) -> int:
        """The one job that started since `started` were (exactly one GPU came free)."""
        new = self.wait(lambda: self.running() - started, "a GPU that came free to start a job")
        assert len(new) == 1, f"one freed GPU started {sorted(new)}"
        return new.pop()

    def start_in_turn(self, running: list[int], count: int) -> list[int]:
        """Release the longest-running job, see which job its GPU starts, and again, `count` times: the
        start sequence. `running`: the jobs holding the GPUs, longest-running first (updated)."""
        started, sequence = set(running), []
        for _ in range(count):
            self.release(running.pop(0))
            sequence.append(self.next_start(started))
            started.add(sequence[-1])
            running.append(sequence[-1])
        return sequence

    def finish(self, job_ids: Iterable[int]) -> None:
        """Release these jobs and wait until every one completed."""
        job_ids = list(job_ids)
        self.release(*job_ids)
        for job_id in job_ids:
            job = self.fleet.wait_status(job_id, {"completed", "failed", "stopped", "cancelled"}, timeout=120)
            assert job["status"] == "completed", job

    def wait(self, check: Any, what: str, timeout: float = 120) -> Any:
        """The first truthy value of `check`; past `timeout`, TimeoutError with the processes' last logs."""
        names = ["api", *self.schedulers, *WORKERS]
        logs = lambda: "\n".join(f"--- {name}\n{self.fleet.log(name)[-1500:]}" for name in names)  # noqa: E731
        return wait_until(check, what, logs, timeout)

    # The scheduler ---------------------------------------------------------------------------------
    def start_scheduler(
        self, name: str = "scheduler", data_dir: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """`trainyard scheduler` with preemption for urgent jobs (`data_dir`: its own beat schedule)."""
        extra = {"TRAINYARD_PREEMPT_FOR": "urgent"}
        if data_dir is not None:
            extra["TRAINYARD_DATA_DIR"] = str(data_dir)
        self.schedulers[name] = self.fleet.spawn(name, ["scheduler"], extra)
        self.fleet.others.append(self.schedulers[name])
        return self.schedulers[name]

    def kill_scheduler(self, name: str = "scheduler") -> None:
        scheduler = self.schedulers.pop(name)
        os.kill(scheduler.pid, signal.SIGKILL)
        scheduler.wait()


def history(yard: Yard, job_id: int) -> list[dict[str, Any]]:
    """Every event of a finished job, in order (the SSE stream replays them and ends)."""
    events = yard.fleet.follow(job_id, timeout=60)
    assert_contiguous(events)
    assert terminal_count(events) == 1, statuses(events)
    return events


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory, stack_redis_url: str) -> Iterator[Yard]:
    root = tmp_path_factory.mktemp("scheduling")
    gate = root / "gate"
    gate.mkdir()
    with fresh_postgres("scheduling") as database_url:
        env = {
            "TRAINYARD_DATA_DIR": str(root / "data"),
            "DATABASE_URL": database_url,
            "REDIS_URL": stack_redis_url,
            "TRAINYARD_SIMULATE_GPU": "1",
            "TRAINYARD_POOLS": "gone",  # a declared pool whose hosts are not up
            "TRAINYARD_SUBMIT_RATE": "1000/60s",
            **LEASE,
        }
        port = free_port()
        fleet = Fleet(root, env, url=f"http://127.0.0.1:{port}", key=create_key(env))
        yard = Yard(fleet, gate, httpx.Client(base_url=fleet.url, headers=fleet.headers, timeout=30))
        fleet.others.append(fleet.spawn("api", ["api", "--port", str(port)]))
        yard.start_scheduler()
        try:
            gated = {"TRAINYARD_FAULT": f"gate:{gate}", "PYTHONPATH": with_injector()}
            for name, (gpu, pool) in WORKERS.items():
                # Training only: a finished job's model validation (inference queue) is not under test.
                options = ["--gpu", gpu, "--pool", pool, "--queues", "training"]
                # Started together and awaited once, not one by one as Fleet.start_worker does.
                fleet.workers[name] = fleet.spawn(name, ["worker", *options, "--name", name], gated)
            wait_for(f"{fleet.url}/health", root / "api.log", timeout=120, workers=len(WORKERS))
            yield yard
        finally:
            yard.http.close()
            processes = [*fleet.workers.values(), *fleet.others]
            for process in processes:  # all at once: each takes seconds to shut down
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            for process in processes:
                stop(process, grace=15)


# 1. Fair share, priorities, age ---------------------------------------------------------------------
PROJECTS = {"A": ("fair-a", 3.0), "B": ("fair-b", 2.0), "C": ("fair-c", 1.0)}  # label: (project, weight)
# Submission order (ids ascending); "label:priority", normal when not said.
SUBMITTED = (
    "A1:low B1 C1 A2 B2 C2 A3 B3 C3 A4 B4 C4 A5 B5 C5 A6 B6 C6:high "
    "A7 B7 A8 B8 A9 B9 A10 B10 A11 B11:high A12 A13"
)
# Each freed GPU is the longest-running job's: the other GPU holds the job started last, whose project runs
# one job; the two others run none and tie on running share. The tie goes to the fewest jobs started (in
# the last hour) per unit of weight, then to priority, then to age:
# - at first nothing has started: the high jobs win, C6 (the older), then B11;
# - then starts follow the weights, 3 of A for 2 of B and 1 of C, each project's jobs by priority then age
#   (A1 is low: A's last); a tie on starts per weight goes to the older job (C1 before B2);
# - A1, low, starts at A's turn all the same: fair share decides between projects, priority within one.
# (With equal weights C1 would follow B1.)
EXPECTED = "C6 B11 A2 B1 A3 C1 A4 B2 A5 B3 A6 C2 A7 B4 A8 B5 A9 C3 A10 B6 A11 B7 A12 C4 A13 B8 A1 B9 C5 B10"


def test_weights_priorities_and_age_give_the_exact_start_order_of_30_jobs(yard: Yard) -> None:
    for project, weight in PROJECTS.values():
        yard.project(project, share_weight=weight)
    holding = [yard.submit(f"hold-{n}", "fair-hold") for n in range(len(WORKERS))]
    yard.wait_running(holding)  # every GPU busy: the 30 jobs below all queue before one starts
    labels = {}
    for entry in SUBMITTED.split():
        label, _, priority = entry.partition(":")
        labels[yard.submit(label, PROJECTS[label[0]][0], priority=priority or "normal")] = label
    line = sorted(yard.jobs(status="queued").values(), key=lambda job: job["waiting"]["position"])
    assert [labels[job["id"]] for job in line[:3]] == ["C6", "B11", "A2"]  # what `waiting` tells users
    assert (line[0]["queue_position"], line[0]["waiting"]["kind"]) == (0, "fair_share")

    started = yard.start_in_turn(holding, count=len(labels))
    yard.finish(holding)

    assert " ".join(labels[job_id] for job_id in started) == EXPECTED
    for project, _ in PROJECTS.values():  # each started once (many wake-up messages notwithstanding)
        ran = {
            (job["status"], job["attempt"], len(job["attempts"]))
            for job in yard.jobs(project=project).values()
        }
        assert ran == {("completed", 1, 1)}


# 2. Quotas and borrowing ----------------------------------------------------------------------------
def test_a_quota_holds_while_others_wait_and_borrows_only_idle_gpus(yard: Yard) -> None:
    # `spare` has no GPU of its own (quota 0) and a weight that fair share alone would favour.
    yard.project("spare", gpu_quota=0, share_weight=10)
    yard.project("team")
    first = [yard.submit(f"s{n}", "spare") for n in (1, 2)]
    yard.wait_running(first)  # two idle GPUs and nobody else waiting: both borrowed
    s3 = yard.submit("s3", "spare")
    t1, t2 = (yard.submit(f"t{n}", "team") for n in (1, 2))
    reason = yard.waiting(s3, "quota")["reason"]
    assert reason.startswith("quota reached: project spare runs 2 of its 0 GPUs"), reason

    # s3 is older and spare runs nothing once t1 holds the other GPU, yet t2 goes first: team is within its
    # quota. s3 borrows the GPU t1 frees, as nobody else waits then.
    holding = list(first)
    assert yard.start_in_turn(holding, count=3) == [t1, t2, s3]
    yard.finish(holding)

    jobs = yard.jobs(project="spare") | yard.jobs(project="team")
    borrowed = {job_id: job["attempts"][0]["borrowed"] for job_id, job in jobs.items()}
    assert borrowed == {first[0]: True, first[1]: True, s3: True, t1: False, t2: False}


# 3. Preemption ----------------------------------------------------------------------------------------
def test_an_urgent_job_preempts_a_borrowed_low_job_which_resumes_from_its_checkpoint(yard: Yard) -> None:
    yard.project("spot", gpu_quota=1)
    steady = yard.submit("p1", "spot", epochs=2)
    low = yard.submit("p2", "spot", epochs=2, priority="low")
    yard.wait_running([steady, low])  # p2 borrowed an idle GPU
    yard.wait_at_gate(low, attempt=1)  # its epoch 1 checkpoint is stored
    gpu = yard.job(low)["attempts"][0]["worker"]

    urgent = yard.submit("urgent", "ops", priority="urgent")  # an admin key's
    yard.wait_running([urgent])  # no GPU was free: the scheduler reclaimed the borrowed one
    assert yard.job(urgent)["attempts"][0]["worker"] == gpu
    assert (yard.job(low)["status"], yard.job(low)["attempt"]) == ("queued", 2)
    reason = yard.waiting(low, "quota")["reason"]
    assert reason.startswith("quota reached: project spot runs 1 of its 1 GPUs"), reason

    yard.release(urgent)
    yard.wait_at_gate(low, attempt=2)  # the urgent job's GPU went back to it
    yard.finish([low, steady, urgent])

    events = history(yard, low)
    assert statuses(events) == ["queued", "running", "stopping", "queued", "running", "completed"]
    stopping, requeued = [e["data"] for e in events if e["type"] == "status"][2:4]
    assert (stopping["requested_by"], stopping["preempted_for"]) == ("scheduler", urgent)
    assert requeued["preempted"] and requeued["reason"] == "preempted" and "failed" not in statuses(events)
    assert requeued["from_checkpoint"].endswith("/weights/last.pt")
    # Epoch 1 trained once: attempt 2 went on from attempt 1's checkpoint.
    assert progress_epochs(events) == [1, 2]
    started = [
        e["data"]["metadata"]
        for e in events
        if e["type"] == "log" and "trainer started" in e["data"]["message"]
    ]
    assert [bool(info["resumed_from"]) for info in started] == [False, True]
    assert "resumed after epoch 1" in [e["data"]["message"] for e in events if e["type"] == "log"]
    attempts = [(a["attempt"], a["outcome"], a["borrowed"]) for a in yard.job(low)["attempts"]]
    assert attempts == [(1, "requeued", True), (2, "completed", True)]


# 4. Pools --------------------------------------------------------------------------------------------
def test_a_pool_requirement_routes_the_job_to_a_worker_of_that_pool(yard: Yard) -> None:
    first = yard.submit("needs-a", "pools", pool="a")
    yard.wait_running([first])
    second = yard.submit("needs-a-too", "pools", pool="a")
    # The pool-b GPU is idle, yet the second pool-a job waits for the pool-a one.
    reason = yard.waiting(second, "fair_share")["reason"]
    assert reason == "waiting for a GPU in pool 'a': 1 busy, 0 job(s) ahead by fair share"
    on_b = yard.submit("needs-b", "pools", pool="b")
    yard.wait_running([on_b])
    assert yard.job(second)["status"] == "queued"
    yard.release(first)
    yard.wait_running([second])
    yard.finish([first, second, on_b])

    placed = {
        job_id: [(a["worker"], a["pool"]) for a in yard.job(job_id)["attempts"]]
        for job_id in (first, second, on_b)
    }
    assert placed == {first: [("gpu-a", "a")], second: [("gpu-a", "a")], on_b: [("gpu-b", "b")]}


def test_a_pool_nobody_serves_is_refused_and_a_declared_one_says_why_it_waits(yard: Yard) -> None:
    refused = yard.post_job("needs-c", "pools", pool="c")
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in refused.json()["errors"]] == ["pool"]
    assert "no worker serves pool 'c'" in refused.json()["detail"]

    # Declared (TRAINYARD_POOLS) before any of its workers came up: accepted, and it says why it waits.
    waits = yard.submit("needs-gone", "pools", pool="gone")
    waiting = yard.job(waits)["waiting"]
    assert (waiting["kind"], waiting["reason"]) == ("pool_unserved", "no live worker consumes pool 'gone'")
    assert yard.http.post(f"{JOBS}/{waits}/cancel").status_code == 200


# 5. The scheduler dies -------------------------------------------------------------------------------
def test_killing_the_scheduler_mid_stream_loses_and_duplicates_nothing(yard: Yard, tmp_path: Path) -> None:
    jobs = [yard.submit(f"s{n}", "steady") for n in range(6)]

    def all_gpus_busy() -> list[int] | None:
        running = yard.running()
        return sorted(running) if len(running) == len(WORKERS) else None

    holding = yard.wait(all_gpus_busy, "every GPU busy")
    yard.kill_scheduler()  # SIGKILL: between two reconciliations, or in the middle of one

    # Without a scheduler, a freed GPU still starts the next job: workers decide when they claim.
    yard.release(holding[0])
    yard.wait(lambda: (running := all_gpus_busy()) and running != holding, "the next job started")

    # Back, and twice by mistake (another host's, with its own beat schedule): the messages of the jobs
    # still queued go out again, and a duplicate wakes a worker that finds nothing more to take.
    yard.start_scheduler("scheduler-again")
    yard.start_scheduler("scheduler-twin", tmp_path / "twin")
    redispatched = re.compile(r"redispatched \[\d")
    yard.wait(lambda: redispatched.search(yard.fleet.log("scheduler-again")), "a redispatch of queued jobs")
    yard.finish(jobs)

    for job_id in jobs:
        assert statuses(history(yard, job_id)) == ["queued", "running", "completed"]
        assert len(yard.job(job_id)["attempts"]) == 1
