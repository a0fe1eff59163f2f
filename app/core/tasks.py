"""Celery names shared by the API (which only sends) and the workers (which run).

Tasks are sent by name so the API never imports worker code (and never torch).
"""

from enum import StrEnum
from functools import lru_cache
from typing import Any

from celery import Celery

from app.core.settings import get_settings


class Queue(StrEnum):
    TRAINING = "training"
    INFERENCE = "inference"
    SCHEDULER = "scheduler"


class TaskName(StrEnum):
    TRAIN = "trainyard.train"
    RECONCILE = "trainyard.reconcile"
    INFER = "trainyard.infer"
    VALIDATE_MODEL = "trainyard.validate_model"
    VALIDATE_WEIGHTS = "trainyard.validate_weights"
    LEAN_MODEL = "trainyard.lean_model"
    EXPORT_MODEL = "trainyard.export_model"


def training_queue(pool: str | None) -> str:
    """A job that needs a pool is announced on that pool's queue, which only its workers consume."""
    return f"{Queue.TRAINING}.{pool}" if pool else Queue.TRAINING


def make_celery(main: str) -> Celery:
    settings = get_settings()
    celery = Celery(main, broker=settings.broker_url)
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=Queue.TRAINING,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # The database, not the broker, decides whether a job runs; a redelivered message for a
        # job that is already running or done is dropped by the task itself.
        broker_transport_options={"visibility_timeout": 3600},
    )
    return celery


@lru_cache
def get_celery_client() -> Celery:
    return make_celery("trainyard-api")


def send_task(name: TaskName, args: list[Any], queue: str, countdown: float | None = None) -> None:
    get_celery_client().send_task(name, args=args, queue=queue, countdown=countdown)
