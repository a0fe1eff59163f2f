"""SSE fan-out: N clients on one job of one API process; a job's cancel is recorded and the time until each
client has its `cancelled` status event is measured, against the same event's arrival on a raw Redis
subscriber (the least any client could wait) in the same run. Real API process, SQLite file, private Redis;
clients are raw sockets on loopback in this process.

    .venv/bin/python bench/bench_fanout.py [--clients 1000] [--rounds 3]

Times start just before the cancel is recorded (commit, then publish) from a thread of this process.
"""

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.db import Database
from app.core.redis import job_channel
from app.training import state
from bench.suite import emit, percentile, recording_stack
from tests.factories import make_job
from tests.support.stack import TRAINYARD, free_port, running, wait_for

MAX_CLIENTS = 2000  # the bench bounds its own load
CANCELLED = b'"status": "cancelled"'


async def sse_client(
    port: int, path: str, key: str, live: asyncio.Event, counter: list[int], need: int
) -> float:
    """Connects, counts itself live once the replay arrived, returns when its `cancelled` event came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = f"Host: bench\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n"
    writer.write(f"GET {path} HTTP/1.1\r\n{headers}\r\n".encode())
    await writer.drain()
    seen, counted = b"", False
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                raise RuntimeError("stream ended before the cancel")
            at = time.perf_counter()
            seen = seen[-64:] + chunk
            if not counted and b'"queued"' in seen:
                counted = True
                counter[0] += 1
                if counter[0] == need:
                    live.set()
            if CANCELLED in seen:
                return at
    finally:
        writer.close()


def raw_subscriber(url: str, channel: str, ready: threading.Event, arrived: list[float]) -> None:
    pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    ready.set()
    while pubsub.get_message(timeout=30) is None:
        pass
    arrived.append(time.perf_counter())
    pubsub.close()


async def one_round(
    db: Database, port: int, key: str, redis_url: str, clients: int
) -> tuple[list[float], float, int]:
    with db.session() as session:
        job_id = make_job(session, name=f"fanout-{time.monotonic_ns()}").id
    path = f"/api/v1/training/jobs/{job_id}/events"
    live, counter = asyncio.Event(), [0]
    tasks = []
    for i in range(clients):
        tasks.append(asyncio.create_task(sse_client(port, path, key, live, counter, clients)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # connect in waves: the listen backlog is finite
    await asyncio.wait_for(live.wait(), 120)
    # Pub/sub connections of the API while all its clients follow the job (this process has none yet).
    connections = redis.Redis.from_url(redis_url).client_list()
    listening = sum(1 for c in connections if c["sub"] != "0" or c["psub"] != "0")
    ready, arrived = threading.Event(), []
    subscriber = threading.Thread(
        target=raw_subscriber, args=(redis_url, job_channel(job_id), ready, arrived)
    )
    subscriber.start()
    ready.wait(10)
    await asyncio.sleep(0.5)  # let everything settle

    def cancel() -> float:
        started = time.perf_counter()
        with db.session() as session:
            state.cancel_job(session, job_id)
        return started

    started = await asyncio.to_thread(cancel)
    received = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    subscriber.join(10)
    return [(at - started) * 1000 for at in received], (arrived[0] - started) * 1000, listening


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    clients = min(args.clients, MAX_CLIENTS)

    with recording_stack("bench-fanout-") as stack:
        db, key, env = stack.db, stack.key, stack.env
        redis_url, root = env["REDIS_URL"], stack.root
        port = free_port()
        client_ms: list[float] = []
        subscriptions = 0
        raw_ms: list[float] = []
        with running([*TRAINYARD, "api", "--port", str(port)], env, root / "api.log"):
            wait_for(f"http://127.0.0.1:{port}/health", root / "api.log")
            for _ in range(args.rounds):
                times, raw, listening = asyncio.run(one_round(db, port, key, redis_url, clients))
                client_ms += times
                raw_ms.append(raw)
                subscriptions = max(subscriptions, listening)
    p50, p99, worst = percentile(client_ms, 50), percentile(client_ms, 99), max(client_ms)
    raw = statistics.median(raw_ms)
    print(f"{clients} SSE clients on one job, one API process, {args.rounds} rounds; {os.cpu_count()} cores")
    print(f"pub/sub connections of the API while they follow: {subscriptions}")
    print(f"{'recorded -> arrival':28}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    print(f"{'SSE clients':28}{p50:10.1f}{p99:10.1f}{worst:10.1f}")
    print(f"{'raw Redis subscriber':28}{raw:10.1f}{max(raw_ms):10.1f}{max(raw_ms):10.1f}")
    emit(
        "fanout",
        [
            {"measure": f"{clients} SSE clients, cancel -> client {name}", "value": value, "baseline": raw}
            | {"unit": "ms"}
            for name, value in (("p50", p50), ("p99", p99), ("max", worst))
        ],
        baseline="raw Redis subscriber (median)",
    )


if __name__ == "__main__":
    main()
