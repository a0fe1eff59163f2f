"""Thin tasks of the inference queue: the payload or id in, the inference service does the work."""

from typing import Any

from app.core.tasks import TaskName
from workers.celery_app import celery_app
from workers.context import get_inference


@celery_app.task(name=TaskName.INFER)
def infer(payload: dict[str, Any]) -> None:
    """Run one inference request; the answer goes to the request's reply key, never to Celery."""
    get_inference().infer(payload)


@celery_app.task(name=TaskName.VALIDATE_MODEL)
def validate_model(model_id: int) -> None:
    """Load a registered model and predict once: it becomes `ready`, or `failed` with the reason."""
    get_inference().validate(model_id)
