"""Celery names shared by the API (which only sends) and the workers (which run).

Tasks are sent by name so the API never imports worker code (and never torch).
"""

import base64
import json
import uuid
from enum import StrEnum
from functools import lru_cache
from typing import Any

from celery import Celery
from kombu.serialization import dumps

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


def queue_entry(name: TaskName, args: list[Any], queue: str, argsrepr: str) -> tuple[str, bytes]:
    """The Redis list and the entry that `send_task(name, args, queue)` pushes there (kombu's Redis
    transport: a JSON envelope around the base64 task message, at priority 0), for a caller that queues
    it with its own asyncio client, in one pipeline with its other commands, instead of kombu's
    blocking producer. `argsrepr` is what Flower shows for the arguments (saferepr of a large payload
    costs a millisecond). tests/core/test_tasks.py holds it to what Celery itself pushes."""
    task_id = str(uuid.uuid4())
    message = get_celery_client().amqp.as_task_v2(
        task_id, name, args=args, argsrepr=argsrepr, kwargsrepr="{}"
    )
    content_type, encoding, body = dumps(message.body, serializer="json")
    envelope = {
        "body": base64.b64encode(body.encode() if isinstance(body, str) else body).decode(),
        "content-encoding": encoding,
        "content-type": content_type,
        "headers": message.headers,
        "properties": {
            **message.properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return queue, json.dumps(envelope).encode()
