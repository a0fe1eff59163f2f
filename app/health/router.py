from typing import Annotated, Any

from fastapi import APIRouter, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import text

from app.core.auth import bearer, principal_from_header, public
from app.core.deps import DatabaseDep
from app.core.redis import get_redis
from app.core.workers import live_workers

router = APIRouter(tags=["health"])


@router.get("/health")
@public
def health(
    db: DatabaseDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> JSONResponse:
    """Database, Redis and worker liveness; 503 when the database or Redis is down. Without a key only
    what a load balancer needs (ok flags, the live worker count); with a valid key also each worker and
    the errors (hosts, pids, current jobs, memory are not for anyone who can reach the port)."""
    detailed = credentials is not None
    if detailed:
        principal_from_header(db, credentials)  # a bad key is a 401, as everywhere
    checks: dict[str, Any] = {}
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": str(exc).splitlines()[0]}
    try:
        client = get_redis()
        client.ping()
        workers = live_workers(client)
        checks["redis"] = {"ok": True}
        checks["workers"] = {"ok": bool(workers), "count": len(workers), "workers": workers}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": str(exc).splitlines()[0]}
        checks["workers"] = {"ok": False, "count": 0, "workers": []}
    healthy = checks["database"]["ok"] and checks["redis"]["ok"]
    if not detailed:
        checks = {name: {k: v for k, v in c.items() if k in ("ok", "count")} for name, c in checks.items()}
    body = {"status": "ok" if healthy else "unavailable", **checks}
    return JSONResponse(body, status_code=200 if healthy else 503)
