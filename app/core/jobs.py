"""The job state machine: which status may follow which.

Terminal states end an attempt for good: no worker write changes them. Only a user's resume turns a
stopped or failed job into a new, queued attempt (checked in app/training/lifecycle.py).
"""

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELLED})
ACTIVE = frozenset({JobStatus.RUNNING, JobStatus.STOPPING})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # A user resumes a stopped or failed job as a new attempt of the same job.
    JobStatus.STOPPED: frozenset({JobStatus.QUEUED}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # running -> queued: the worker was lost and the job goes back with attempt + 1.
    JobStatus.RUNNING: frozenset(
        {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPING, JobStatus.STOPPED, JobStatus.QUEUED}
    ),
    JobStatus.STOPPING: frozenset(
        {JobStatus.STOPPED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.QUEUED}
    ),
}


class InvalidTransition(Exception):
    def __init__(self, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"a {current} job cannot become {target}")
        self.current = current
        self.target = target


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def check_transition(current: JobStatus, target: JobStatus) -> None:
    if not can_transition(current, target):
        raise InvalidTransition(current, target)
