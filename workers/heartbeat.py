"""The worker's heartbeat while it runs a job: renews the GPU lease and the job's DB lease, and
notices a lost lease or a stop request. A lease that cannot be renewed before it expires is lost."""

import logging
import threading
import time

from app.core.db import Database
from app.core.events import StaleAttempt
from app.core.jobs import JobStatus
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
        while not self._done.wait(self.interval):
            self.beat()

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
