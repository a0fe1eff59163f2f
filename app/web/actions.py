"""Every write the dashboard makes, in one place: the same service calls the REST routes make.

The job lifecycle lives in app/training/state.py; when it moves, only this module follows it.
"""

from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.db import Database
from app.core.ratelimit import check_rate
from app.core.settings import get_settings
from app.core.visibility import ensure_project_usable, ensure_project_visible
from app.dataset_registry import service as dataset_service
from app.fleet import router as fleet_router
from app.fleet.schemas import WorkerRead
from app.inference import router as inference_router
from app.inference.schemas import WorkerModelsAction
from app.model_registry import deployments
from app.model_registry import service as model_service
from app.models import Dataset, DatasetVersion, Deployment, TrainingJob
from app.training import schemas, service, state
from app.versions import service as version_service
from app.versions.schemas import VersionCreate

TRANSITIONS = {"stop": state.stop_job, "cancel": state.cancel_job, "resume": state.resume_job}


def act(session: Session, principal: Principal, job_id: int, action: str) -> TrainingJob:
    """Stop, cancel or resume a job the principal can see (404 otherwise; 409 when the job's status
    does not allow it)."""
    principal.require_write()
    return TRANSITIONS[action](session, job_id, principal)


def submit(session: Session, principal: Principal, body: schemas.JobCreate) -> TrainingJob:
    """Create a job as `POST /api/v1/training/jobs` does (same rate limit, same checks)."""
    principal.require_write()
    check_rate("submit", str(principal.key_id), get_settings().submit_rate)
    ensure_project_usable(session, principal, body.project)
    return service.create_job(session, body, principal)


def deploy(session: Session, principal: Principal, model_id: int) -> Deployment:
    """Make a model its project's active model for its task (`POST .../deployments`)."""
    principal.require_write()
    model = model_service.get_model(session, model_id, principal=principal)
    return deployments.deploy(session, model.project_id, model.id, None)


def rollback(session: Session, principal: Principal, project_id: int, task: str) -> Deployment:
    principal.require_write()
    ensure_project_visible(principal, project_id)
    return deployments.rollback(session, project_id, task)


def revert(session: Session, principal: Principal, project_id: int, task: str) -> Deployment | None:
    principal.require_write()
    ensure_project_visible(principal, project_id)
    return deployments.revert(session, project_id, task)


def drain(principal: Principal, worker_id: str) -> WorkerRead:
    """`POST /api/v1/workers/{id}/drain`: the fleet's writes live in its endpoint functions."""
    principal.require_write()
    return fleet_router.drain_worker(worker_id, principal)


async def worker_model(db: Database, principal: Principal, worker_id: str, action: str, model_id: int) -> Any:
    """`POST /api/v1/workers/{id}/models`: load a model into a worker's cache, or unload it."""
    principal.require_write()
    body = WorkerModelsAction(action=action, model_id=model_id)
    return await inference_router.control_models(worker_id, body, db, principal)


def register_dataset(
    session: Session, principal: Principal, project_id: int, name: str, zip_file: BinaryIO
) -> Dataset:
    """`POST /api/v1/datasets`: a DICE dataset from an uploaded ZIP (validated, or nothing is kept)."""
    principal.require_write()
    ensure_project_visible(principal, project_id)
    return dataset_service.register_from_zip(session, project_id, name, None, zip_file)


def freeze_version(
    db: Database, principal: Principal, project_id: int, body: VersionCreate
) -> tuple[DatasetVersion, bool]:
    """`POST /api/v1/projects/{id}/versions`: freeze a dataset version (idempotent by key)."""
    principal.require_write()
    ensure_project_visible(principal, project_id)
    return version_service.create_version(db, project_id, body)
