"""What a key sees of the fleet."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.models import TrainingJob


def as_seen_by(session: Session, principal: Principal, workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Workers serve every project, but the job one runs is its project's: a key that does not cover
    that project sees no current job (app/core/visibility.py)."""
    if principal.all_projects:
        return workers
    running = {w["current_job"] for w in workers if w.get("current_job") is not None}
    visible = set(
        session.scalars(
            select(TrainingJob.id).where(
                TrainingJob.id.in_(running), principal.project_filter(TrainingJob.project_id)
            )
        )
    )
    return [
        {**w, "current_job": w.get("current_job") if w.get("current_job") in visible else None}
        for w in workers
    ]
