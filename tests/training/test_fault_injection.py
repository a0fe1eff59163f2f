"""Fault injection: real worker processes, a real Redis, PostgreSQL, real training.

Each test asserts the database state and the event log (contiguous seq, one terminal event)."""

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from celery import Celery

from tests.conftest import fresh_postgres
from tests.factories import make_yolo_dataset
from tests.support.fleet import (
    LEASE,
    Fleet,
    PrivateRedis,
    assert_contiguous,
    epoch_done,
    is_epoch_end,
    progress_epochs,
    running_fleet,
    running_worker,
    statuses,
    terminal_count,
)
from tests.support.stack import stop

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Enough images that an epoch takes a few seconds: room to kill, pause or stop mid-epoch.
    return make_yolo_dataset(tmp_path_factory.mktemp("faults") / "shapes", train=48, val=8, size=96)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, private_redis: PrivateRedis) -> Iterator[Fleet]:
    """API + scheduler; tests start and kill the workers they need."""
    root = tmp_path_factory.mktemp("fleet")
    with fresh_postgres("faults") as database_url:
        env = {
            "TRAINYARD_DATA_DIR": str(root / "data"),
            "DATABASE_URL": database_url,
            "REDIS_URL": private_redis.url,
            "TRAINYARD_IMPORT_ROOTS": str(tmp_path_factory.getbasetemp()),
            "TRAINYARD_WARM_TRAINER": "true",  # kills and stops reach jobs run by spare trainers
            **LEASE,
        }
        with running_fleet(root, env) as fleet:
            yield fleet


@pytest.fixture
def workers(fleet: Fleet) -> Iterator[Fleet]:
    """Each test starts its own workers and leaves no worker behind for the next."""
    yield fleet
    for process in fleet.workers.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)
        stop(process, grace=15)
    fleet.workers.clear()


def test_sigkill_mid_training_resumes_on_another_worker(workers: Fleet, dataset: Path) -> None:
    fleet = workers
    hosts = {"kill-a": "rack-a", "kill-b": "rack-b"}  # TRAINYARD_HOST: the name a machine goes by
    for name, host in hosts.items():
        fleet.start_worker(name, {"TRAINYARD_HOST": host})
    job = fleet.submit("sigkill", dataset, epochs=5)
    early = fleet.follow(job["id"], until=epoch_done(1))
    victim = running_worker(early)
    fleet.kill_worker(victim)  # during epoch 2
    killed_at = time.monotonic()
    back = fleet.follow(
        job["id"],
        after=early[-1]["seq"],
        until=lambda e: e["type"] == "status" and e["data"]["status"] == "running",
    )
    recovery = time.monotonic() - killed_at
    events = early + back + fleet.follow(job["id"], after=back[-1]["seq"])

    assert_contiguous(events)
    assert statuses(events) == ["queued", "running", "queued", "running", "completed"]
    assert terminal_count(events) == 1
    assert running_worker(events) != victim
    # No epoch trained twice: attempt 2 starts after the last epoch attempt 1 checkpointed.
    assert progress_epochs(events) == [1, 2, 3, 4, 5]
    requeued = next(e["seq"] for e in events if e["type"] == "status" and e["data"].get("requeued"))
    assert all(e["data"]["attempt"] == 2 for e in events if e["type"] == "checkpoint" and e["seq"] > requeued)
    resumed = [
        e
        for e in events
        if e["type"] == "log" and e["seq"] > requeued and "trainer started" in e["data"]["message"]
    ]
    assert resumed and resumed[0]["data"]["metadata"]["resumed_from"], "attempt 2 did not resume from last.pt"
    final = fleet.job(job["id"])
    assert (final["status"], final["attempt"], final["current_epoch"]) == ("completed", 2, 5)
    # The job says where each attempt ran, and how it ended.
    survivor = running_worker(events)
    placed = [(a["attempt"], a["worker"], a["host"], a["outcome"]) for a in final["attempts"]]
    assert placed == [(1, victim, hosts[victim], "requeued"), (2, survivor, hosts[survivor], "completed")]
    assert final["host"] == hosts[survivor]
    print(f"\nrecovery: worker SIGKILL -> job running again in {recovery:.1f} s")
    assert recovery < 30


def test_a_paused_worker_past_its_lease_is_fenced_out(workers: Fleet, dataset: Path) -> None:
    fleet = workers
    paused = fleet.start_worker("pause-a")
    job = fleet.submit("sigstop", dataset, epochs=4)
    early = fleet.follow(job["id"], until=epoch_done(1))
    os.killpg(paused.pid, signal.SIGSTOP)  # the whole machine freezes: worker and trainer
    fleet.start_worker("pause-b")
    back = fleet.follow(
        job["id"],
        after=early[-1]["seq"],
        until=lambda e: e["type"] == "status" and e["data"]["status"] == "running",
    )
    assert running_worker(back) == "pause-b"
    os.killpg(paused.pid, signal.SIGCONT)  # it wakes up, still believing it owns the job
    events = early + back + fleet.follow(job["id"], after=back[-1]["seq"])

    assert_contiguous(events)
    assert statuses(events)[-1] == "completed" and terminal_count(events) == 1
    requeued = next(e["seq"] for e in events if e["type"] == "status" and e["data"].get("requeued"))
    assert all(e["data"]["attempt"] == 2 for e in events if e["type"] == "checkpoint" and e["seq"] > requeued)
    assert fleet.job(job["id"])["attempt"] == 2
    deadline = time.monotonic() + 20
    while "stale" not in fleet.log("pause-a") and "lost its lease" not in fleet.log("pause-a"):
        assert time.monotonic() < deadline, "the stale worker never noticed"
        time.sleep(0.5)
    # Its record of attempt 1 was closed when the job was requeued; attempt 2's is pause-b's alone.
    placed = [(a["attempt"], a["worker"], a["outcome"]) for a in fleet.job(job["id"])["attempts"]]
    assert placed == [(1, "pause-a", "requeued"), (2, "pause-b", "completed")]


def test_stop_then_resume_completes_without_retraining(workers: Fleet, dataset: Path) -> None:
    fleet = workers
    fleet.start_worker("stop-a")
    job = fleet.submit("stop-resume", dataset, epochs=4)
    early = fleet.follow(job["id"], until=epoch_done(1))
    response = fleet.post(job["id"], "stop")
    assert response.status_code == 200 and response.json()["status"] == "stopping"
    stopped_part = early + fleet.follow(job["id"], after=early[-1]["seq"])
    assert statuses(stopped_part) == ["queued", "running", "stopping", "stopped"]
    stopped = fleet.job(job["id"])
    assert stopped["status"] == "stopped" and stopped["current_epoch"] <= 2, "did not stop within an epoch"
    assert stopped["checkpoints"]["last"] and stopped["checkpoints"]["best"]
    assert fleet.post(job["id"], "stop").status_code == 409

    resumed = fleet.post(job["id"], "resume")
    assert resumed.status_code == 200 and resumed.json()["attempt"] == 2
    rest = fleet.follow(job["id"], after=stopped_part[-1]["seq"])
    events = stopped_part + rest
    assert_contiguous(events)
    assert statuses(rest) == ["queued", "running", "completed"]
    assert progress_epochs(events) == [1, 2, 3, 4][: len(progress_epochs(events))]
    assert sorted(set(progress_epochs(events))) == [1, 2, 3, 4]
    assert fleet.job(job["id"])["status"] == "completed"


def test_a_cancelled_queued_job_never_starts(workers: Fleet, dataset: Path) -> None:
    fleet = workers
    fleet.start_worker("cancel-a")
    first = fleet.submit("cancel-first", dataset, epochs=2)
    doomed = fleet.submit("cancel-doomed", dataset, epochs=2)
    cancelled = fleet.post(doomed["id"], "cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    after = fleet.submit("cancel-after", dataset, epochs=1)
    assert statuses(fleet.follow(after["id"]))[-1] == "completed"
    assert statuses(fleet.follow(first["id"]))[-1] == "completed"
    assert statuses(fleet.follow(doomed["id"])) == ["queued", "cancelled"]
    assert fleet.post(doomed["id"], "cancel").status_code == 409
    assert fleet.job(doomed["id"])["started_at"] is None


def test_transient_failure_is_retried_then_succeeds(workers: Fleet, dataset: Path) -> None:
    fleet = workers
    fleet.start_worker("flaky-a", {"TRAINYARD_FAULT": "transient:1:1"})
    job = fleet.submit("transient", dataset, epochs=2)
    events = fleet.follow(job["id"])
    assert_contiguous(events)
    assert statuses(events) == ["queued", "running", "queued", "running", "completed"]
    errors = [e["data"] for e in events if e["type"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == "TRANSIENT_ERROR" and errors[0]["retrying"]
    assert fleet.job(job["id"])["attempt"] == 2


def test_non_transient_failure_fails_once(workers: Fleet, tmp_path: Path) -> None:
    fleet = workers
    fleet.start_worker("fatal-a")
    broken = tmp_path / "broken"  # its split folders exist (submission checks that) but hold no image
    for split in ("train", "val"):
        (broken / "images" / split).mkdir(parents=True)
    (broken / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: a}\n")
    job = fleet.submit("non-transient", broken, epochs=1)
    events = fleet.follow(job["id"])
    assert statuses(events) == ["queued", "running", "failed"]
    assert [e["data"]["code"] for e in events if e["type"] == "error"] == ["DATASET_NOT_FOUND"]
    assert fleet.job(job["id"])["attempt"] == 1


def test_duplicate_delivery_runs_one_attempt(
    workers: Fleet, dataset: Path, private_redis: PrivateRedis
) -> None:
    fleet = workers
    fleet.start_worker("dup-a")
    fleet.start_worker("dup-b")
    job = fleet.submit("duplicate", dataset, epochs=2)
    broker = Celery(broker=private_redis.url)
    broker.send_task("trainyard.train", args=[job["id"], 1], queue="training")  # the same message again
    events = fleet.follow(job["id"])
    assert_contiguous(events)
    assert statuses(events) == ["queued", "running", "completed"]
    time.sleep(1)
    logs = fleet.log("dup-a") + fleet.log("dup-b")
    assert "no queued job for pool" in logs  # the second wake-up found nothing to run


def test_workers_registry_drain_and_graceful_shutdown(workers: Fleet, dataset: Path) -> None:
    fleet = workers
    cached = fleet.root / "data" / "cache" / "datasets" / "v1" / "images.bin"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"\0" * 300_000)
    fleet.start_worker("drain-a", {"TRAINYARD_HOST": "rack-d"})
    listed = httpx.get(f"{fleet.url}/api/v1/workers", headers=fleet.headers, timeout=10).json()["items"]
    mine = next(w for w in listed if w["id"] == "drain-a")
    assert mine["status"] == "online" and mine["device"] == "cpu" and mine["memory_total_mb"] > 0
    assert set(mine["queues"]) == {"training", "inference"} and mine["heartbeat_age_seconds"] < 30
    # Where it runs and what it keeps: its host by TRAINYARD_HOST (the drain below reaches it by that
    # name too), its caches and the disk of its data dir.
    assert mine["host"] == "rack-d" and mine["cache_bytes"] >= cached.stat().st_size
    assert 0 < mine["disk_free_bytes"] <= mine["disk_total_bytes"]

    first = fleet.submit("drain-first", dataset, epochs=2)
    fleet.follow(first["id"], until=lambda e: e["type"] == "status" and e["data"]["status"] == "running")
    drained = httpx.post(f"{fleet.url}/api/v1/workers/drain-a/drain", headers=fleet.headers, timeout=10)
    assert drained.status_code == 202 and drained.json()["status"] == "draining"
    second = fleet.submit("drain-second", dataset, epochs=8)
    assert statuses(fleet.follow(first["id"]))[-1] == "completed"  # the current job finishes
    time.sleep(3)
    assert fleet.job(second["id"])["status"] == "queued"  # and no new one is taken

    fleet.start_worker("drain-b")
    events = fleet.follow(second["id"], until=epoch_done(1))
    assert running_worker(events) == "drain-b"
    # SIGTERM mid-training: the job goes back to the queue, resumable, and the worker goes offline.
    fleet.kill_worker("drain-b", signal.SIGTERM)
    assert fleet.workers["drain-b"].wait(60) == 0
    handed_back = fleet.job(second["id"])
    assert handed_back["status"] == "queued" and handed_back["attempt"] == 2
    gone = httpx.get(f"{fleet.url}/api/v1/workers/drain-b", headers=fleet.headers, timeout=10).json()
    assert gone["status"] == "offline"
    fleet.start_worker("drain-c")
    rest = fleet.follow(second["id"])
    assert statuses(rest)[-3:] == ["queued", "running", "completed"]
    assert (
        httpx.get(f"{fleet.url}/api/v1/workers/nobody", headers=fleet.headers, timeout=10).status_code == 404
    )


def test_redis_restart_loses_nothing(workers: Fleet, dataset: Path, private_redis: PrivateRedis) -> None:
    fleet = workers
    fleet.start_worker("restart-a")
    running = fleet.submit("restart-running", dataset, epochs=4)
    waiting = fleet.submit("restart-queued", dataset, epochs=1)
    early = fleet.follow(running["id"], until=epoch_done(1))
    # Redis dies and comes back empty (no persistence): queued messages, locks and channels are gone.
    private_redis.stop()
    time.sleep(1)
    private_redis.start()
    rest = fleet.follow(running["id"], after=early[-1]["seq"])
    events = early + rest
    assert_contiguous(events)
    assert statuses(events) == ["queued", "running", "completed"]
    assert progress_epochs(events) == [1, 2, 3, 4]
    # The lost message of the queued job is sent again by the reconciler.
    assert statuses(fleet.follow(waiting["id"]))[-1] == "completed"


def test_a_worker_lost_after_the_last_epoch_leaves_the_full_results(workers: Fleet, dataset: Path) -> None:
    """Killed after its last epoch but before it reported completion: the next attempt finds nothing
    left to train, and the job still completes with everything a straight run has."""
    fleet = workers
    # Attempt 1 trains every epoch, then never says it completed (tests/support/inject/sitecustomize.py).
    fleet.start_worker("end-a", {"TRAINYARD_FAULT": "hang_before_completion:1"})
    job = fleet.submit("lost-at-the-end", dataset, epochs=2)
    early = fleet.follow(job["id"], until=lambda e: is_epoch_end(e) and e["data"]["phase"] == "final")
    fleet.kill_worker("end-a")  # last.pt of the last epoch is stored: its event came first
    fleet.start_worker("end-b")
    events = early + fleet.follow(job["id"], after=early[-1]["seq"])

    assert_contiguous(events)
    assert statuses(events) == ["queued", "running", "queued", "running", "completed"]
    assert terminal_count(events) == 1
    final = fleet.job(job["id"])
    assert (final["status"], final["attempt"], final["current_epoch"]) == ("completed", 2, 2)
    results = final["results"]
    best = next(
        e["data"] for e in reversed(events) if e["type"] == "checkpoint" and e["data"]["kind"] == "best"
    )
    assert (results["best_epoch"], results["best_metrics"]) == (best["epoch"], best["metrics"])
    last_metrics = next(e["data"] for e in reversed(events) if e["type"] == "metrics")
    assert results["final_metrics"] == last_metrics["val"] and results["epochs_completed"] == 2
    assert results["model_info"]["class_names"] == ["red", "blue"]
    prefix = final["checkpoints"]["best"].rsplit("/weights/", 1)[0]
    storage = fleet.root / "data" / "storage" / prefix / "artifacts"
    assert (storage / "results.csv").read_text().count("\n") == 3  # a header and one line per epoch
    assert "epochs: 2" in (storage / "args.yaml").read_text()
    models = httpx.get(f"{fleet.url}/api/v1/models", headers=fleet.headers, timeout=10).json()["items"]
    model = next(m for m in models if m["lineage"]["job_id"] == job["id"])
    assert model["best_epoch"] == best["epoch"] and model["metrics"] == best["metrics"]
