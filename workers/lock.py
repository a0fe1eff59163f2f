"""The GPU lease: a python-redis-lock TTL lock per device, renewed by our heartbeat (not by the
library's renewal thread, which dies silently on a single connection error)."""

import logging

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

    def acquire(self, timeout: int | None = None) -> bool:
        """Block until the device is free (training and inference on one GPU exclude each other)."""
        return bool(self.lock.acquire(blocking=True, timeout=timeout))

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
            self.lock.release()
        except redis_lock.NotAcquired:
            log.warning("GPU lease of %s had already expired at release", self.owner)

    def clear_own_stale(self) -> bool:
        """At start-up: drop a lock that a previous run of *this* worker left; never anyone else's."""
        if self.lock.get_owner_id() == self.owner:
            self.lock.reset()
            log.info("cleared a stale GPU lease left by a previous run of %s", self.owner)
            return True
        return False
