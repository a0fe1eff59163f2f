"""The HTTP service. It never imports workers/ (no torch in the web process)."""

from fastapi import Depends, FastAPI

from app.configs.router import router as configs_router
from app.core.auth import authenticate
from app.core.db import Database, get_database
from app.core.limits import BodyLimitMiddleware
from app.core.logging import configure_logging
from app.core.problems import register_error_handlers
from app.core.request_id import RequestIdMiddleware
from app.core.security import secret_key
from app.dataset_registry.router import router as datasets_router
from app.fleet.router import router as fleet_router
from app.health.router import router as health_router
from app.inference.router import router as inference_router
from app.inference.router import workers_router as worker_models_router
from app.model_registry.router import deployments_router
from app.model_registry.router import router as models_router
from app.observability.router import router as observability_router
from app.projects.router import router as projects_router
from app.releases.router import router as releases_router
from app.training.callbacks import router as callbacks_router
from app.training.preflight import router as preflight_router
from app.training.router import router as training_router
from app.versions.router import router as versions_router
from app.web import router as web
from app.weights.router import router as weights_router


def create_app(db: Database | None = None) -> FastAPI:
    configure_logging("api")

    # Outside dev, a missing TRAINYARD_SECRET_KEY stops the API now rather than at the first token.
    secret_key()
    # Every route needs an API key unless its endpoint is marked public (app/core/auth.py).
    # /docs and /redoc come from the vendored assets (app/web/docs.py), not the CDN.
    app = FastAPI(
        title="Trainyard",
        version="0.1.0",
        dependencies=[Depends(authenticate)],
        docs_url=None,
        redoc_url=None,
    )
    app.state.db = db or get_database()
    register_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: even a 413 from the body limit carries the id

    app.include_router(health_router)
    app.include_router(fleet_router)
    app.include_router(observability_router)
    app.include_router(training_router)
    app.include_router(preflight_router)
    app.include_router(callbacks_router)
    app.include_router(configs_router)
    app.include_router(projects_router)
    app.include_router(datasets_router)
    app.include_router(versions_router)
    app.include_router(releases_router)
    app.include_router(models_router)  # after configs: /models/catalog stays the catalog
    app.include_router(deployments_router)
    app.include_router(inference_router)
    app.include_router(worker_models_router)
    app.include_router(weights_router)
    web.install(app)  # the dashboard under /, after the API: its pages never shadow an API route
    return app
