"""The job vocabulary, defined once: what a job trains (task type), with what (framework), and the
statuses it moves through. Which status may follow which, and what each change does, is
app/training/state.py (docs/architecture.md, "Job states")."""

from enum import StrEnum


class TaskType(StrEnum):
    CLASSIFICATION = "classification"
    DETECTION = "detection"
    SEGMENTATION = "segmentation"
    POSE = "pose"


class Framework(StrEnum):
    ULTRALYTICS = "ultralytics"
    PYTORCH = "pytorch"  # the framework-free example trainer (examples/plain_pytorch)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"


# Terminal states end an attempt for good: no worker write changes them (only a user's resume does).
TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELLED})
# A worker owns the job (holds its lease) in these.
ACTIVE = frozenset({JobStatus.RUNNING, JobStatus.STOPPING})
