"""SSE replay and live follow, and the read endpoints fed by what a trainer reported."""

import json
import threading
import time
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.events import EventType, lock_job, record_event
from app.training import state
from app.training.reports import apply_report
from app.training.stream import JobEventStream
from tests.factories import make_job
from trainyard_sdk.reports import CheckpointReport, LogReport, MetricsReport, ProgressReport

pytestmark = pytest.mark.integration


def parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if "data" in fields:
            event = json.loads(fields["data"])
            assert fields["id"] == str(event["seq"]) and fields["event"] == event["type"]
            events.append(event)
    return events


def train_to_completion(db: Database, job_id: int, epochs: int = 2, delay: float = 0.0) -> None:
    with db.session() as s:
        state.claim(s, job_id, 1, "worker-a", 30)
    for epoch in range(1, epochs + 1):
        time.sleep(delay)
        with db.session() as s:
            entry = {"level": "info", "message": f"epoch {epoch} done"}
            apply_report(s, job_id, 1, LogReport.model_validate(entry))
            metrics = MetricsReport(epoch=epoch, train={"box_loss": 1.0 / epoch}, val={"mAP50": 0.1 * epoch})
            apply_report(s, job_id, 1, metrics)
            checkpoint = CheckpointReport(
                kind="last",
                path="projects/demo/model/training/run/weights/last.pt",
                epoch=epoch,
                size_bytes=123,
                metrics={"mAP50": 0.1 * epoch},
            )
            apply_report(s, job_id, 1, checkpoint)
            apply_report(s, job_id, 1, ProgressReport(epoch=epoch, epochs=epochs, eta_s=1.0))
    with db.session() as s:
        state.complete(s, job_id, 1, {"best_epoch": epochs, "best_metrics": {"mAP50": 0.2}})


def test_replay_is_complete_ordered_and_closes_after_the_terminal_event(
    client: TestClient, db: Database
) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    train_to_completion(db, job_id)
    events = parse_sse(client.get(f"/api/v1/training/jobs/{job_id}/events").text)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["data"]["status"] for e in events if e["type"] == "status"] == [
        "queued",
        "running",
        "completed",
    ]
    assert [e["data"]["epoch"] for e in events if e["type"] == "progress"] == [1, 2]
    assert events[-1]["type"] == "status"


def test_reconnect_with_last_event_id_gets_the_rest_exactly_once(client: TestClient, db: Database) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    train_to_completion(db, job_id)
    everything = parse_sse(client.get(f"/api/v1/training/jobs/{job_id}/events").text)
    rest = parse_sse(
        client.get(f"/api/v1/training/jobs/{job_id}/events", headers={"Last-Event-ID": "5"}).text
    )
    assert rest == everything[5:]
    by_query = parse_sse(client.get(f"/api/v1/training/jobs/{job_id}/events", params={"after": 5}).text)
    assert by_query == rest


def test_live_stream_follows_a_running_job(client: TestClient, db: Database) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    trainer = threading.Thread(target=train_to_completion, args=(db, job_id, 3, 0.3))
    trainer.start()
    received: list[dict[str, Any]] = []
    with client.stream("GET", f"/api/v1/training/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            *blocks, buffer = buffer.replace("\r\n", "\n").split("\n\n")
            received += parse_sse("\n\n".join(blocks) + "\n\n")
    trainer.join()
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    assert [e["data"]["epoch"] for e in received if e["type"] == "progress"] == [1, 2, 3]
    assert received[-1]["data"]["status"] == "completed"


def test_a_stream_is_not_held_up_by_a_transaction_in_progress(db: Database) -> None:
    """While a worker's transaction is still open, a stream sends what is committed (not what is not)
    at once: its reads never wait for a writer (on SQLite they used to take the write lock)."""
    with db.session() as s:
        job_id = make_job(s).id

    async def never() -> bool:
        return False

    async def first_event() -> dict[str, Any]:
        with anyio.fail_after(10):
            async with aclosing(JobEventStream(db, job_id, 0, never).events()) as events:
                async for event in events:
                    return event
        raise AssertionError("the stream ended without an event")

    with db.session() as worker:
        job = lock_job(worker, job_id)
        record_event(worker, job, EventType.PROGRESS, {"epoch": 1, "epochs": 2})
        event = anyio.run(first_event)
    assert (event["seq"], event["data"]["status"]) == (1, "queued")


def test_read_endpoints_show_what_was_reported(client: TestClient, db: Database) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    train_to_completion(db, job_id)
    job = client.get(f"/api/v1/training/jobs/{job_id}").json()
    assert job["status"] == "completed" and job["current_epoch"] == 2 and job["finished_at"]
    assert job["results"]["best_metrics"] == {"mAP50": 0.2}
    assert job["checkpoints"]["last"].endswith("weights/last.pt")
    metrics = client.get(f"/api/v1/training/jobs/{job_id}/metrics").json()
    assert [(e["epoch"], e["val_metrics"]["mAP50"]) for e in metrics["epochs"]] == [(1, 0.1), (2, 0.2)]
    checkpoints = client.get(f"/api/v1/training/jobs/{job_id}/checkpoints").json()
    assert [c["epoch"] for c in checkpoints["history"]] == [1, 2]
    logs = client.get(f"/api/v1/training/jobs/{job_id}/logs", params={"level": "INFO", "limit": 1}).json()
    assert logs["total"] == 2 and logs["has_more"] and logs["logs"][0]["message"] == "epoch 1 done"
    assert client.get(f"/api/v1/training/jobs/{job_id}/logs", params={"level": "ERROR"}).json()["total"] == 0
    bad = client.get(f"/api/v1/training/jobs/{job_id}/logs", params={"level": "LOUD"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "level"


def test_a_finished_job_refuses_further_reports(db: Database) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    train_to_completion(db, job_id)
    with pytest.raises(state.JobFinished), db.session() as s:
        apply_report(s, job_id, 1, ProgressReport(epoch=3, epochs=3))


def stop_then_resume(client: TestClient, db: Database, job_id: int) -> None:
    """Attempt 1 runs and is stopped by the user; the job is resumed as attempt 2 (queued)."""
    with db.session() as s:
        state.claim(s, job_id, 1, "worker-a", 30)
    assert client.post(f"/api/v1/training/jobs/{job_id}/stop").json()["status"] == "stopping"
    with db.session() as s:
        state.stopped(s, job_id, 1)
    assert client.post(f"/api/v1/training/jobs/{job_id}/resume").json()["attempt"] == 2


def test_a_resumed_job_streams_every_attempt_until_its_final_status(client: TestClient, db: Database) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    stop_then_resume(client, db, job_id)

    def second_attempt() -> None:
        time.sleep(0.5)
        with db.session() as s:
            state.claim(s, job_id, 2, "worker-b", 30)
        with db.session() as s:
            state.complete(s, job_id, 2, {"best_epoch": 1})

    trainer = threading.Thread(target=second_attempt)
    trainer.start()
    events = parse_sse(client.get(f"/api/v1/training/jobs/{job_id}/events").text)
    trainer.join()
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "running", "stopping", "stopped", "queued", "running", "completed"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_a_stream_opened_past_the_final_status_resends_it_and_ends(client: TestClient, db: Database) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    train_to_completion(db, job_id)
    everything = parse_sse(client.get(f"/api/v1/training/jobs/{job_id}/events").text)
    last = everything[-1]["seq"]
    again = parse_sse(
        client.get(f"/api/v1/training/jobs/{job_id}/events", headers={"Last-Event-ID": str(last)}).text
    )
    assert again == [everything[-1]] and again[0]["data"]["status"] == "completed"


def test_a_stopped_job_not_resumed_ends_its_stream_at_stopped(client: TestClient, db: Database) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    with db.session() as s:
        state.claim(s, job_id, 1, "worker-a", 30)
    client.post(f"/api/v1/training/jobs/{job_id}/stop")
    with db.session() as s:
        state.stopped(s, job_id, 1)
    events = parse_sse(client.get(f"/api/v1/training/jobs/{job_id}/events").text)
    assert events[-1]["data"]["status"] == "stopped"
