"""Thin tasks of the inference queue: the payload or id in, the inference service does the work."""

from typing import Any

from app.core.tasks import TaskName
from workers.celery_app import celery_app
from workers.context import get_inference


# No task events: a request lasts milliseconds, and Celery's received/started/succeeded events are three
# more publishes on the hot path (one on the consumer's thread, contending for the GIL with the predict).
# Requests show in the reply's timing_ms and in /metrics instead of Flower.
@celery_app.task(name=TaskName.INFER, send_events=False)
def infer(payload: dict[str, Any]) -> None:
    """Run one inference request; the answer goes to the request's reply key, never to Celery."""
    get_inference().infer(payload)


@celery_app.task(name=TaskName.VALIDATE_MODEL)
def validate_model(model_id: int) -> None:
    """Load a registered model and predict once: it becomes `ready`, or `failed` with the reason."""
    get_inference().validate(model_id)
