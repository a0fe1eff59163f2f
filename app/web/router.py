"""Everything the dashboard adds to the app: its pages, static files, offline API docs, CORS."""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from app.core.settings import get_settings
from app.web import auth_pages, compare, datasets, docs, errors, fleet, jobs, live, models, new_job

STATIC = Path(__file__).parent / "static"


def pages() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    # live before jobs: `/jobs/live` is not a job; new_job before jobs: nor is `/jobs/new`.
    for part in (auth_pages, live, new_job, compare, jobs, models, fleet, datasets):
        for route in part.router.routes:
            if isinstance(route, APIRoute):
                errors.web_endpoint(route.endpoint)
        router.include_router(part.router)
    return router


def install(app: FastAPI) -> None:
    app.include_router(pages())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    docs.install(app)
    errors.install(app)
    origins = get_settings().resolved_cors_origins
    if origins:
        # Third-party front ends call the API with a bearer key, and follow a job's events with a stream
        # token (`?token=`); cookies are never sent cross-origin (no credentials).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
