"""Two projects with a row of every kind, and keys of every sort, for the attack tests."""

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.core.db import Database
from app.core.settings import get_settings
from app.keys.service import revoke_key
from app.main import create_app
from app.models import ApiKey, Dataset, DatasetVersion, JobEvent, Project, TrainingJob
from tests.conftest import bearer_headers, make_api_key
from tests.dataset_api.conftest import make_dataset, make_project
from tests.factories import make_job, make_yolo_dataset

pytestmark = pytest.mark.integration


@dataclass
class World:
    """Project `alpha` (a job, a dataset, a version, a release ZIP) and project `beta` (a job)."""

    alpha: int
    beta: int
    alpha_job: int
    beta_job: int
    dataset: int
    version: int
    release: str
    keys: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        return bearer_headers(self.keys[who])


@pytest.fixture
def app(db: Database) -> FastAPI:
    return create_app(db)


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    """No key by default: each request says who it is."""
    with TestClient(app) as client:
        yield client


@pytest.fixture
def world(api: TestClient, db: Database, admin_headers: dict[str, str], tmp_path: Path) -> World:
    admin = TestClient(api.app, headers=admin_headers)
    alpha, dataset = make_dataset(admin, tmp_path / "alpha", project="alpha")
    version = admin.post(f"/api/v1/projects/{alpha}/versions", json={})
    assert version.status_code == 201, version.text
    beta = make_project(admin, "beta")["id"]
    with db.session() as session:
        alpha_job = make_job(session, "a-run", project="alpha").id
        beta_job = make_job(session, "b-run", project="beta").id
    release = "projects/alpha/releases/r1.zip"
    zip_file = get_settings().resolved_storage_root / release
    zip_file.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_file, "w") as archive:
        archive.writestr("data/a.txt", "a")
    keys = {
        "admin": admin_headers["Authorization"].removeprefix("Bearer "),
        "member_alpha": make_api_key(db, "member", ["alpha"]),
        "member_beta": make_api_key(db, "member", ["beta"]),
        "viewer_alpha": make_api_key(db, "viewer", ["alpha"]),
        "viewer_all": make_api_key(db, "viewer", all_projects=True),
        "revoked": make_api_key(db, "admin"),
    }
    with db.session() as session:
        revoke_key(session, keys["revoked"])
    return World(alpha, beta, alpha_job, beta_job, dataset, version.json()["id"], release, keys)


def snapshot(db: Database) -> tuple[int | None, ...]:
    """Row counts of everything a request could change, and the keys' revocations."""
    with db.session() as s:
        counts = tuple(
            s.scalar(select(func.count()).select_from(t))
            for t in (Project, TrainingJob, JobEvent, Dataset, DatasetVersion, ApiKey)
        )
        revoked = s.scalar(select(func.count()).where(ApiKey.revoked_at.is_not(None)))
        names = tuple(s.scalars(select(Project.name).order_by(Project.id)))
    return (*counts, revoked, *names)


def redis_state(client: redis.Redis) -> list[tuple[bytes, int]]:
    """Every Redis key but the rate limiter's counters, with the length of the lists (queues)."""
    keys = sorted(k for k in client.keys("*") if not k.startswith(b"trainyard:rate:"))
    return [(k, client.llen(k) if client.type(k) == b"list" else 0) for k in keys]


def _flatten(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # FastAPI keeps included routers as they are
            yield from _flatten(route.original_router.routes)


def api_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) of every API route (docs pages are not API routes, nor are the dashboard's
    pages, which sign in with a session cookie: tests/web)."""
    return [
        (method, route.path, route)
        for route in _flatten(app.routes)
        if not getattr(route.endpoint, "__trainyard_web__", False)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"})
    ]


def marked(route: APIRoute, mark: str) -> bool:
    return bool(getattr(route.endpoint, f"__trainyard_{mark}__", False))


def assert_problem(response: object, status: int) -> dict[str, object]:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == status, (response.request.method, response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, object] = response.json()
    assert body["status"] == status and body["code"] and body["request_id"]
    return body


@pytest.fixture(scope="session")
def yolo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("datasets") / "shapes", train=2, val=1, size=32)
