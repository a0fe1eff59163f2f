"""A job's results as recorded along the way: the last `best` checkpoint and the metrics of each epoch.

A completion carries the job's full results whichever attempt reaches it: an attempt that resumes a
checkpoint covering every epoch trained nothing itself, so what it cannot tell is taken from what the
earlier attempts recorded (docs/architecture.md, "Results").
"""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.events import EventType
from app.models import JobEvent, TrainingJob


def events_of_type(session: Session, job_id: int, type: EventType) -> list[JobEvent]:
    stmt = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == type).order_by(JobEvent.seq)
    return list(session.scalars(stmt))


def recorded_best(session: Session, job: TrainingJob) -> tuple[int | None, dict[str, Any]]:
    """Epoch and metrics of the job's last `best` checkpoint event ((None, {}) without one)."""
    for event in reversed(events_of_type(session, job.id, EventType.CHECKPOINT)):
        if event.data.get("kind") == "best":
            return event.data.get("epoch"), dict(event.data.get("metrics") or {})
    return None, {}


def recorded_epochs(session: Session, job: TrainingJob) -> dict[int, dict[str, Any]]:
    """The metrics event of each epoch; a resumed attempt may report an epoch again and the latest wins."""
    return {int(e.data["epoch"]): e.data for e in events_of_type(session, job.id, EventType.METRICS)}


def complete_results(session: Session, job: TrainingJob, reported: dict[str, Any]) -> dict[str, Any]:
    """`reported`, with what it leaves out filled from the job's recorded checkpoints and metrics."""
    results = dict(reported)
    if results.get("best_epoch") is None or not results.get("best_metrics"):
        best_epoch, best_metrics = recorded_best(session, job)
        results["best_epoch"] = results.get("best_epoch") or best_epoch
        results["best_metrics"] = results.get("best_metrics") or best_metrics
    if not results.get("final_metrics") or results.get("epochs_completed") is None:
        epochs = recorded_epochs(session, job)
        if epochs:
            last = max(epochs)
            results["final_metrics"] = results.get("final_metrics") or dict(epochs[last].get("val") or {})
            results["epochs_completed"] = results.get("epochs_completed") or last
    return results
