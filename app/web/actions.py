"""Every job write the dashboard makes, in one place: the same service calls the REST routes make.

The job lifecycle is being reshaped (app/training/{service,lifecycle}.py); when it moves, only this
module follows it.
"""

from sqlalchemy.orm import Session

from app.core.auth import Principal, ensure_project_usable, ensure_visible
from app.core.ratelimit import check_rate
from app.core.settings import get_settings
from app.models import TrainingJob
from app.training import lifecycle, schemas, service

TRANSITIONS = {"stop": lifecycle.stop, "cancel": lifecycle.cancel, "resume": lifecycle.resume}


def act(session: Session, principal: Principal, job_id: int, action: str) -> TrainingJob:
    """Stop, cancel or resume a job the principal can see (404 otherwise; 409 when the job's status
    does not allow it)."""
    principal.require_write()
    job = service.get_job(session, job_id)
    ensure_visible(principal, job.project_id, "training job", job_id)
    return TRANSITIONS[action](session, job_id)


def submit(session: Session, principal: Principal, body: schemas.JobCreate) -> TrainingJob:
    """Create a job as `POST /api/v1/training/jobs` does (same rate limit, same checks)."""
    principal.require_write()
    check_rate("submit", str(principal.key_id), get_settings().submit_rate)
    ensure_project_usable(session, principal, body.project)
    return service.create_job(session, body, principal)
