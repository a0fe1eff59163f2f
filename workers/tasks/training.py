"""Thin task: take ids, let the runner reload state from the database and do the work.

The task's own outcome matches the job's: an attempt that fails its job ends the task with JobFailed, so
Celery (and Flower) show FAILURE, not SUCCESS. Stopped, cancelled and retried jobs are no failure of the
task. Either way the message is acknowledged: the database, not a redelivery, decides what runs next.
"""

import logging

from app.core.tasks import TaskName
from workers.celery_app import celery_app
from workers.context import get_runner
from workers.runner import AttemptOutcome

log = logging.getLogger("operations.training")


class JobFailed(Exception):
    """The training job failed with this attempt (its error code and message say why)."""


def check_outcome(outcome: AttemptOutcome | None) -> None:
    if outcome is not None and outcome.failed:
        raise JobFailed(
            f"training job {outcome.job_id} attempt {outcome.attempt} failed: "
            f"{outcome.error_code}: {outcome.error_message}"
        )


@celery_app.task(name=TaskName.TRAIN, throws=(JobFailed,))
def train(job_id: int, attempt: int) -> None:
    """A wake-up: the job it names is a hint; the worker runs what the scheduler gives it
    (app/scheduling/)."""
    log.info("woken for job %s attempt %s", job_id, attempt)
    failed = [outcome for outcome in get_runner().serve() if outcome.failed]
    check_outcome(failed[-1] if failed else None)  # Flower shows FAILURE when a job it ran failed
