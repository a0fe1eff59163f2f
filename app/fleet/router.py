"""The worker registry: who is out there, on which device, doing what; and draining a worker."""

from typing import Any

from fastapi import APIRouter

from app.core.auth import PrincipalDep
from app.core.deps import SessionDep
from app.core.errors import not_found
from app.core.redis import get_redis
from app.core.tasks import get_celery_client
from app.core.workers import all_workers, mark_draining
from app.fleet.schemas import WorkerPage, WorkerRead
from app.fleet.service import as_seen_by

router = APIRouter(prefix="/api/v1/workers", tags=["workers"])


def _find(worker_id: str) -> dict[str, Any]:
    for worker in all_workers(get_redis()):
        if worker["id"] == worker_id:
            return worker
    raise not_found("worker", worker_id)


@router.get("")
def list_workers(session: SessionDep, principal: PrincipalDep) -> WorkerPage:
    """Every registered worker: host, device (GPU name and memory, or CPU), queues, version, current
    job (when the key covers its project), the size of its caches and its free disk, heartbeat age and
    status (online, draining, offline)."""
    workers = as_seen_by(session, principal, all_workers(get_redis()))
    return WorkerPage(items=[WorkerRead.model_validate(w) for w in workers], total=len(workers))


@router.get("/{worker_id}")
def get_worker(worker_id: str, session: SessionDep, principal: PrincipalDep) -> WorkerRead:
    return WorkerRead.model_validate(as_seen_by(session, principal, [_find(worker_id)])[0])


@router.post("/{worker_id}/drain", status_code=202)
def drain_worker(worker_id: str, principal: PrincipalDep) -> WorkerRead:
    """Finish the current job, take no more: the worker stops consuming its queues. Admin keys (or keys
    for all projects) only: workers serve every project."""
    principal.require_all_projects("draining a worker")
    worker = _find(worker_id)
    if worker["status"] == "offline":
        return WorkerRead.model_validate(worker)
    control = get_celery_client().control
    for queue in worker.get("queues", []):
        control.cancel_consumer(queue, destination=[f"{worker_id}@{worker['host']}"])
    mark_draining(get_redis(), worker_id)
    return WorkerRead.model_validate({**worker, "status": "draining"})
