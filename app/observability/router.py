from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from app.core.auth import PrincipalDep
from app.core.deps import DatabaseDep
from app.core.redis import get_redis
from app.observability.metrics import FleetCollector

router = APIRouter(tags=["observability"])


@router.get("/metrics", include_in_schema=False)
def metrics(db: DatabaseDep, principal: PrincipalDep) -> Response:
    """Prometheus text format: this process's metrics, then the fleet's (database and Redis).
    Fleet-wide numbers: an admin key or an all-projects key (e.g. `--role viewer --all-projects`)."""
    principal.require_all_projects("reading fleet metrics")
    fleet = CollectorRegistry(auto_describe=False)
    fleet.register(FleetCollector(db, get_redis()))
    body = generate_latest(REGISTRY) + generate_latest(fleet)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
