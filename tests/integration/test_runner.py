"""The worker's runner in this process, with tiny trainers (Python scripts) instead of a real one: how
a trainer's reports and exit become the job's state, and the worker registry's current job."""

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from app.core.db import Database
from app.core.jobs import Framework, JobStatus
from app.core.settings import get_settings
from app.core.storage import get_storage
from app.models import JobEvent, TrainingJob
from app.training import frameworks
from tests.factories import make_job
from workers.identity import WorkerIdentity
from workers.lock import GpuLease
from workers.runner import TrainingRunner

pytestmark = pytest.mark.integration

GOOD_START = """
from trainyard_sdk import TrainerSDK
sdk = TrainerSDK.from_env()
sdk.report_started(pid=1)
sdk.report_progress(0, 1, phase="setup")
"""


@pytest.fixture
def run_trainer(
    db: Database, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], tuple[int, list[int | None]]]]:
    """Run a queued plain-pytorch job whose trainer is `script`; (job id, the runner's current job as
    the registry was told it on each change)."""
    identity = WorkerIdentity(name="runner-test", device="cpu", queues=("training",))
    lease = GpuLease(redis_client, identity.device_key, identity.name, ttl_seconds=30)

    def run(script: str) -> tuple[int, list[int | None]]:
        trainer = tmp_path / "trainer.py"
        trainer.write_text(script)
        spec = dataclasses.replace(frameworks.FRAMEWORKS[Framework.PYTORCH], trainer_args=(str(trainer),))
        monkeypatch.setitem(frameworks.FRAMEWORKS, Framework.PYTORCH, spec)
        with db.session() as s:
            job_id = make_job(s, framework="pytorch", task_type="classification", dataset_path=None).id
        told: list[int | None] = []
        runner = TrainingRunner(db, get_storage(), lease, identity, get_settings())
        runner.on_job_change = lambda: told.append(runner.current_job)
        runner.run(job_id, 1)
        return job_id, told

    yield run


def job_and_events(db: Database, job_id: int) -> tuple[TrainingJob, list[JobEvent]]:
    with db.session() as s:
        job = s.get_one(TrainingJob, job_id)
        s.expunge(job)
        events = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))
        for event in events:
            s.expunge(event)
    return job, events


def test_a_line_that_is_not_a_report_fails_the_job_at_once(
    run_trainer: Callable[[str], tuple[int, list[int | None]]], db: Database
) -> None:
    script = (
        GOOD_START
        + """
import os, time
with os.fdopen(int(os.environ["TRAINYARD_REPORT_FD"]), "w") as pipe:
    pipe.write('{"type": "progress", "epoch": "one"}\\n')
time.sleep(600)  # a trainer that would otherwise sit there until its lease expired
"""
    )
    started = time.monotonic()
    job_id, _ = run_trainer(script)
    assert time.monotonic() - started < 60
    job, events = job_and_events(db, job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "INVALID_REPORT")
    assert "progress.epoch" in (job.error_message or "")
    assert [e.type for e in events][-2:] == ["error", "status"]
    assert [e.data for e in events if e.type == "progress"] == [
        {"epoch": 0, "epochs": 1, "batch": None, "batches": None, "eta_s": None, "phase": "setup"}
    ]
    assert job.progress == {
        "epoch": 0,
        "epochs": 1,
        "batch": None,
        "batches": None,
        "eta_s": None,
        "phase": "setup",
    }


def test_the_registry_is_told_the_current_job_at_the_claim_and_at_the_end(
    run_trainer: Callable[[str], tuple[int, list[int | None]]], db: Database
) -> None:
    script = GOOD_START + "sdk.report_completed({'epochs_completed': 1})\nsdk.close()\n"
    job_id, told = run_trainer(script)
    assert told == [job_id, None]
    job, _ = job_and_events(db, job_id)
    assert job.status == JobStatus.COMPLETED


def test_a_trainer_crash_is_retried_with_the_outputs_tail(
    run_trainer: Callable[[str], tuple[int, list[int | None]]], db: Database
) -> None:
    job_id, _ = run_trainer(GOOD_START + "sdk.close()\nprint('about to fail')\nraise SystemExit(3)\n")
    job, events = job_and_events(db, job_id)
    error = next(e.data for e in events if e.type == "error")
    assert error["code"] == "TRAINER_CRASHED" and error["retrying"] is True
    assert "trainer exited with code 3" in error["message"] and "about to fail" in error["message"]
    assert (job.status, job.attempt) == (JobStatus.QUEUED, 2)
