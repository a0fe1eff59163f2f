"""The GPU lease: a python-redis-lock TTL lock per device, renewed by our heartbeat (not by the
library's renewal thread, which dies silently on a single connection error).

The Redis lock excludes other processes on the same GPU; a process-local mutex in front of it excludes
this process's own threads (a training job, a warm request, a model warming up), since one Lock object
cannot be acquired twice.
"""

import logging
import threading
import time

import redis
import redis_lock

log = logging.getLogger("operations.training")


class LeaseLost(Exception):
    """The lock expired or was taken over: this worker must stop touching the job."""


class GpuLease:
    def __init__(self, client: redis.Redis, device_key: str, owner: str, ttl_seconds: int) -> None:
        self.owner = owner
        self.ttl_seconds = ttl_seconds
        self.lock = redis_lock.Lock(client, f"trainyard:gpu:{device_key}", expire=ttl_seconds, id=owner)
        self._local = threading.Lock()
        self._in_redis = False  # whether the holder (one at a time, by the mutex) took the Redis lock

    def acquire(self, timeout: float | None = None, local_only: bool = False) -> bool:
        """Block until the device is free (training and inference on one GPU exclude each other);
        False when `timeout` seconds (at most the TTL) pass first. `local_only`: no other process can
        want this device (a CPU worker's key is its own), so a request's predict skips Redis."""
        started = time.monotonic()
        if not self._local.acquire(timeout=-1 if timeout is None else timeout):
            return False
        if local_only:
            self._in_redis = False
            return True
        try:
            if timeout is None:
                acquired = bool(self.lock.acquire(blocking=True))
            else:
                left = timeout - (time.monotonic() - started)
                # The library takes whole seconds (0 would mean forever); timeout 0 tries once.
                acquired = bool(
                    self.lock.acquire(blocking=True, timeout=min(self.ttl_seconds, max(1, round(left))))
                    if timeout > 0
                    else self.lock.acquire(blocking=False)
                )
        except BaseException:
            self._local.release()
            raise
        if not acquired:
            self._local.release()
        self._in_redis = acquired
        return acquired

    def renew(self) -> None:
        try:
            self.lock.extend(expire=self.ttl_seconds)
        except redis_lock.NotAcquired as exc:
            # A Redis restart without persistence forgets every lock. Nobody else holds this one,
            # so take it back; the job's DB lease (fenced by attempt) still decides who owns the job.
            if self.lock.get_owner_id() is None and self.lock.acquire(blocking=False):
                log.warning("GPU lease of %s was forgotten by Redis; re-acquired", self.owner)
                return
            raise LeaseLost(str(exc)) from exc

    def release(self) -> None:
        try:
            if self._in_redis:
                self.lock.release()
        except redis_lock.NotAcquired:
            log.warning("GPU lease of %s had already expired at release", self.owner)
        finally:
            self._in_redis = False
            self._local.release()

    def clear_own_stale(self) -> bool:
        """At start-up: drop a lock that a previous run of *this* worker left; never anyone else's."""
        if self.lock.get_owner_id() == self.owner:
            self.lock.reset()
            log.info("cleared a stale GPU lease left by a previous run of %s", self.owner)
            return True
        return False
