"""One subscription per API process feeds all its SSE streams; a stalled client is dropped, not waited for."""

import threading
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
import pytest
import redis
from fastapi.testclient import TestClient

from app.core import fanout
from app.core.db import Database
from app.core.redis import job_channel
from app.training import state
from app.training.reports import apply_report
from app.training.stream import JobEventStream
from tests.conftest import REDIS_URL, clear_caches
from tests.factories import make_job
from tests.training.test_job_stream import parse_sse, train_to_completion
from trainyard_sdk.reports import LogReport

pytestmark = pytest.mark.integration

CLIENTS = 12


def pattern_subscribers(redis_client: redis.Redis) -> int:
    return sum(1 for c in redis_client.client_list() if int(c.get("psub", 0)) > 0)


def feed_of(job_id: int) -> fanout.Feed | None:
    channel = job_channel(job_id)
    for hub in list(fanout._hubs.values()):
        for (name, _), feed in list(hub.feeds.items()):
            if name == channel:
                return feed
    return None


def test_many_clients_get_every_event_once_in_order_over_one_subscription(
    client: TestClient, db: Database, redis_client: redis.Redis
) -> None:
    with db.session() as s:
        job_id = make_job(s).id
    before = pattern_subscribers(redis_client)
    results: list[list[dict[str, Any]]] = []

    def watch() -> None:
        results.append(parse_sse(client.get(f"/api/v1/training/jobs/{job_id}/events").text))

    watchers = [threading.Thread(target=watch) for _ in range(CLIENTS)]
    for watcher in watchers:
        watcher.start()
    deadline = time.monotonic() + 20
    while (feed := feed_of(job_id)) is None or len(feed.clients) < CLIENTS:
        assert time.monotonic() < deadline, "the clients never all joined the job's feed"
        time.sleep(0.05)
    assert pattern_subscribers(redis_client) == before + 1
    assert redis_client.pubsub_numsub(job_channel(job_id)) == [(job_channel(job_id).encode(), 0)]

    train_to_completion(db, job_id, epochs=3, delay=0.05)
    for watcher in watchers:
        watcher.join(timeout=20)
    assert len(results) == CLIENTS
    first = results[0]
    assert [e["seq"] for e in first] == list(range(1, len(first) + 1))
    assert first[-1]["data"]["status"] == "completed"
    assert all(events == first for events in results)
    deadline = time.monotonic() + 10
    while pattern_subscribers(redis_client) > before:  # the last client gone, the subscription goes too
        assert time.monotonic() < deadline
        time.sleep(0.05)


async def collect(events: AsyncIterator[dict[str, Any]], into: list[dict[str, Any]]) -> None:
    async for event in events:
        into.append(event)


def test_a_stalled_client_is_dropped_without_holding_up_the_others(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "CLIENT_BUFFER", 3)
    with db.session() as s:
        job_id = make_job(s).id

    async def never() -> bool:
        return False

    def claim() -> None:
        with db.session() as s:
            state.claim(s, job_id, 1, "worker-a", 30)

    def log_line(i: int) -> None:
        with db.session() as s:
            apply_report(s, job_id, 1, LogReport(level="info", message=f"line {i}"))

    def complete() -> None:
        with db.session() as s:
            state.complete(s, job_id, 1, {})

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        fast: list[dict[str, Any]] = []
        stalled_stream = JobEventStream(db, job_id, 0, never).events()
        stalled = [await anext(stalled_stream)]  # joined the feed, then reads nothing for a while
        async with anyio.create_task_group() as group:
            group.start_soon(collect, JobEventStream(db, job_id, 0, never).events(), fast)
            # One event at a time, each seen by the fast client before the next: one read each.
            for seq, step in enumerate([claim, *(partial(log_line, i) for i in range(6)), complete], start=2):
                await anyio.to_thread.run_sync(step)
                with anyio.fail_after(10):
                    while not fast or fast[-1]["seq"] < seq:
                        await anyio.sleep(0.01)
        await collect(stalled_stream, stalled)
        rest: list[dict[str, Any]] = []
        await collect(JobEventStream(db, job_id, stalled[-1]["seq"], never).events(), rest)
        return fast, stalled, rest

    fast, stalled, rest = anyio.run(scenario)
    assert [e["seq"] for e in fast] == list(range(1, 10)) and fast[-1]["data"]["status"] == "completed"
    # The replay (seq 1) and the reads it had room for (3; a read may carry two events when the machine
    # is slow), then it was dropped before the end.
    assert stalled == fast[: len(stalled)] and 4 <= len(stalled) < len(fast)
    assert stalled + rest == fast  # reconnecting after the drop loses nothing, repeats nothing


def test_installations_on_different_databases_use_different_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    channels = set()
    for number in (3, 4):
        monkeypatch.setenv("REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + f"/{number}")
        clear_caches()
        channels.add(job_channel(1))
    clear_caches()
    assert len(channels) == 2


def test_without_redis_the_streams_poll_and_miss_nothing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/7")  # nobody listens there: no publish, no bell
    clear_caches()
    with db.session() as s:
        job_id = make_job(s).id

    async def never() -> bool:
        return False

    async def follow() -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        async with anyio.create_task_group() as group:
            group.start_soon(collect, JobEventStream(db, job_id, 0, never).events(), received)
            await anyio.to_thread.run_sync(train_to_completion, db, job_id, 2)
        return received

    received = anyio.run(follow)
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    assert received[-1]["data"]["status"] == "completed"


def test_one_bell_over_many_jobs_rings_when_any_of_them_has_an_event(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a jobs list page waits on: with the fallback read minutes away, an event of any listed job
    still wakes it at once, and the jobs' own bells are gone once the page is."""
    monkeypatch.setattr(fanout, "POLL_SECONDS", 300.0)
    with db.session() as s:
        first, second = make_job(s, "first").id, make_job(s, "second").id

    def cancel(job_id: int) -> None:
        with db.session() as s:
            state.cancel_job(s, job_id)

    async def scenario() -> list[int]:
        hub = fanout.Hub()
        rings = []
        async with hub.any_of([job_channel(first), job_channel(second)]) as bell:
            for job_id in (second, first):
                seen = bell.rings
                await anyio.to_thread.run_sync(cancel, job_id)
                with anyio.fail_after(20):  # far below POLL_SECONDS: only the event can wake it
                    rings.append(await bell.wait(seen, fanout.POLL_SECONDS) - seen)
        assert not hub.bells
        return rings

    assert all(rung >= 1 for rung in anyio.run(scenario))
