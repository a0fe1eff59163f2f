"""The worker-side Celery app: queues, routes, reliability settings and the beat schedule.

`celery -A workers.celery_app flower` and `celery -A workers.celery_app beat` use it as is.
"""

import logging

from celery import signals
from kombu import Exchange
from kombu import Queue as KombuQueue

from app.core.logging import configure_logging
from app.core.settings import get_settings
from app.core.tasks import Queue, TaskName, make_celery

celery_app = make_celery("trainyard")
app = celery_app  # the name `celery -A workers.celery_app` looks for

celery_app.conf.update(
    task_queues=[KombuQueue(q.value, Exchange(q.value), routing_key=q.value) for q in Queue],
    task_routes={
        TaskName.TRAIN: {"queue": Queue.TRAINING},
        TaskName.RECONCILE: {"queue": Queue.SCHEDULER},
        TaskName.INFER: {"queue": Queue.INFERENCE},
        TaskName.VALIDATE_MODEL: {"queue": Queue.INFERENCE},
        TaskName.VALIDATE_WEIGHTS: {"queue": Queue.INFERENCE},
        TaskName.LEAN_MODEL: {"queue": Queue.INFERENCE},
        TaskName.EXPORT_MODEL: {"queue": Queue.INFERENCE},
    },
    # One task at a time per GPU process, acknowledged when done. The message only wakes a worker:
    # the job row decides what runs, so losing or repeating a message loses or repeats nothing.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_send_task_events=True,
    task_send_sent_event=True,
    beat_schedule={
        "reconcile": {
            "task": TaskName.RECONCILE,
            "schedule": get_settings().reconcile_seconds,
            "options": {"queue": Queue.SCHEDULER, "expires": get_settings().reconcile_seconds},
        }
    },
    include=[
        "workers.tasks.training",
        "workers.tasks.reconcile",
        "workers.tasks.inference",
        "workers.tasks.weights",
    ],
)


@signals.setup_logging.connect(weak=False)
def _keep_trainyard_logging(**_: object) -> None:
    """Celery would replace the root handlers with its own text format; keep ours (JSON in production)."""
    if not logging.getLogger().handlers:
        configure_logging("celery")
