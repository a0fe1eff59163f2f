"""The scheduler's periodic repair (Celery beat)."""

import logging
from datetime import timedelta

from app.core.db import get_database
from app.core.settings import get_settings
from app.core.tasks import TaskName
from app.scheduling.priorities import preempt_priority
from app.training import reconcile as repairs
from app.training.service import live_workers_or_none
from workers.celery_app import celery_app

log = logging.getLogger("operations.training")


@celery_app.task(name=TaskName.RECONCILE)
def reconcile() -> dict[str, list[int]]:
    settings = get_settings()
    with get_database().session() as session:
        requeued = repairs.requeue_expired_leases(session, settings.max_attempts)
        redispatched = repairs.redispatch_stale_queued(
            session, timedelta(seconds=settings.redispatch_after_seconds), live_workers_or_none()
        )
        released = repairs.release_idle_versions(session)
    with get_database().session() as session:
        # Room for the freed GPU to be claimed first (a worker takes a job within about a second).
        grace = timedelta(seconds=max(2.0, settings.reconcile_seconds))
        preempted = repairs.reclaim_borrowed(session, preempt_priority(settings.preempt_for), grace)
    if requeued or redispatched or released or preempted:
        log.info(
            "reconciled: requeued %s, redispatched %s, released versions %s, preempted %s",
            requeued,
            redispatched,
            released,
            preempted,
        )
    return {
        "requeued": requeued,
        "redispatched": redispatched,
        "released_versions": released,
        "preempted": preempted,
    }
