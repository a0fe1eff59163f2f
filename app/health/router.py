from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.core.auth import public
from app.core.deps import DatabaseDep
from app.core.redis import get_redis
from app.core.workers import live_workers

router = APIRouter(tags=["health"])


@router.get("/health")
@public
def health(db: DatabaseDep) -> JSONResponse:
    """Database, Redis and worker liveness; 503 when the database or Redis is down."""
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
    body = {"status": "ok" if healthy else "unavailable", **checks}
    return JSONResponse(body, status_code=200 if healthy else 503)
