"""Thin task: take ids, let the runner reload state from the database and do the work."""

import logging

from app.core.tasks import TaskName
from workers.celery_app import celery_app
from workers.context import get_runner

log = logging.getLogger("operations.training")


@celery_app.task(name=TaskName.TRAIN)
def train(job_id: int, attempt: int) -> None:
    get_runner().run(job_id, attempt)
