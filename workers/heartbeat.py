"""The worker's heartbeat while it runs a job: renews the GPU lease and the job's DB lease, and
notices a lost lease or a stop request. A lease that cannot be renewed before it expires is lost.

Between beats it listens to the job's event channel, so that a user's Stop (a `stopping` status
event) is seen at once rather than at the next beat; the database stays the truth (the beat reads it)."""

import contextlib
import json
import logging
import threading
import time
from typing import Any

from app.core.db import Database
from app.core.events import EventType, StaleAttempt
from app.core.jobs import JobStatus
from app.core.redis import get_redis, job_channel
from app.training import state
from workers.lock import GpuLease, LeaseLost

log = logging.getLogger("operations.training")


class Heartbeat(threading.Thread):
    def __init__(
        self,
        db: Database,
        lease: GpuLease,
        job_id: int,
        attempt: int,
        interval: float,
        ttl: float,
    ) -> None:
        super().__init__(name=f"heartbeat-job-{job_id}", daemon=True)
        self.db = db
        self.lease = lease
        self.job_id = job_id
        self.attempt = attempt
        self.interval = interval
        self.ttl = ttl
        self.lost = threading.Event()
        self.stop_requested = threading.Event()
        self._done = threading.Event()
        self._deadline = time.monotonic() + ttl

    def run(self) -> None:
        bell = StopBell(self.job_id)
        try:
            while True:
                bell.wait(self.interval, self._done)
                if self._done.is_set():
                    return
                self.beat()
        finally:
            bell.close()

    def beat(self) -> None:
        try:
            self.lease.renew()
            with self.db.session() as session:
                status = state.renew_lease(session, self.job_id, self.attempt, self.lease.owner, self.ttl)
            self._deadline = time.monotonic() + self.ttl
            if status == JobStatus.STOPPING:
                self.stop_requested.set()
        except (LeaseLost, StaleAttempt) as exc:
            log.error("job %s attempt %s lost its lease: %s", self.job_id, self.attempt, exc)
            self.lost.set()
        except Exception:
            # Redis or the database is briefly away: keep trying until the lease would have expired.
            if time.monotonic() > self._deadline:
                log.error("job %s attempt %s: lease expired while renewal failed", self.job_id, self.attempt)
                self.lost.set()
            else:
                log.warning("heartbeat of job %s failed; retrying", self.job_id, exc_info=True)

    def stop(self) -> None:
        self._done.set()


class StopBell:
    """The job's event channel, heard between beats: a `stopping` status event rings it. Without Redis
    it stays silent and the heartbeat beats on its interval alone, as it always may."""

    SLICE = 0.5  # how often a wait looks at `done`, so that a finished job's heartbeat ends promptly

    def __init__(self, job_id: int) -> None:
        self.pubsub: Any = None
        try:
            self.pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
            self.pubsub.subscribe(job_channel(job_id))
        except Exception:  # Redis away (or anything else): the beats alone see a stop, as they always may
            log.warning("job %s: stop requests are seen at each heartbeat only (no Redis)", job_id)
            self.pubsub = None

    def wait(self, seconds: float, done: threading.Event) -> None:
        """Until `seconds` pass, `done` is set, or the bell rings."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not done.is_set():
            if self.pubsub is None:
                done.wait(min(left, self.SLICE))
                continue
            try:
                message = self.pubsub.get_message(timeout=min(left, self.SLICE))
            except Exception:  # the connection broke or was closed under it: the beats go on regardless
                log.warning("stop bell of a job went silent; stops are seen at each beat", exc_info=True)
                self.close()
                continue
            if message is not None and asks_to_stop(message.get("data")):
                return

    def close(self) -> None:
        if self.pubsub is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail in any way
                self.pubsub.close()
            self.pubsub = None


def asks_to_stop(data: Any) -> bool:
    try:
        event = json.loads(data)
        return bool(event["type"] == EventType.STATUS and event["data"]["status"] == JobStatus.STOPPING)
    except (TypeError, ValueError, KeyError):
        return False
