"""Every route of the app, walked: without a key, with a malformed, unknown or revoked one, with a key
for another project, and with a viewer's key on writes. Each answer is the right 4xx problem+json
and changes nothing."""

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.db import Database
from tests.auth.conftest import World, api_routes, assert_problem, marked, snapshot

pytestmark = pytest.mark.integration

OPEN = {("GET", "/health")}
BAD_KEYS = {
    "missing": {},
    "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
    "empty bearer": {"Authorization": "Bearer "},
    "malformed": {"Authorization": "Bearer not-a-key"},
    "unknown": {"Authorization": "Bearer ty_0badc0de_" + "x" * 43},
}


def fill(path: str, ids: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(ids.get(m.group(1), 1)), path)


def call(api: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    body = None if method in {"GET", "DELETE"} else {}
    return api.request(
        method, path, headers=headers, json=body, params={"zip_path": "projects/x/releases/y.zip"}
    )


def test_the_openapi_document_lists_the_api(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    assert "/api/v1/training/jobs" in paths and "/health" in paths
    assert "/api/v1/training/jobs/{job_id}/stream-token" in paths
    assert app.openapi()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


@pytest.mark.parametrize("bad", sorted(BAD_KEYS))
def test_every_route_refuses_a_missing_or_bad_key(
    api: TestClient, app: FastAPI, db: Database, world: World, bad: str
) -> None:
    before = snapshot(db)
    checked = 0
    for method, path, _route in api_routes(app):
        if (method, path) in OPEN:
            continue
        response = call(api, method, fill(path, {}), BAD_KEYS[bad])
        assert_problem(response, 401)
        checked += 1
    assert checked > 30
    assert snapshot(db) == before


def test_every_route_refuses_a_revoked_key(api: TestClient, app: FastAPI, db: Database, world: World) -> None:
    before = snapshot(db)
    for method, path, _route in api_routes(app):
        if (method, path) not in OPEN:
            body = assert_problem(call(api, method, fill(path, {}), world.headers("revoked")), 401)
            assert body["code"] == "UNAUTHORIZED"
    assert snapshot(db) == before


def test_the_open_routes_need_no_key(api: TestClient) -> None:
    assert api.get("/health").status_code in (200, 503)
    assert api.get("/openapi.json").status_code == 200
    assert api.get("/docs").status_code == 200
    assert api.get("/redoc").status_code == 200


# The rows of project alpha that each path parameter names.
def alpha_ids(world: World) -> dict[str, Any]:
    return {
        "job_id": world.alpha_job,
        "project_id": world.alpha,
        "dataset_id": world.dataset,
        "version_id": world.version,
    }


BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/api/v1/projects/{project_id}"): {"json": {"description": "mine now"}},
    ("POST", "/api/v1/datasets/{dataset_id}/annotations"): {"data": {"batch": "{}"}},
}


def scoped_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Routes that name a row of a project (trainer callbacks have their own token)."""
    params = {"job_id", "project_id", "dataset_id", "version_id"}
    return [
        (method, path)
        for method, path, _route in api_routes(app)
        if set(re.findall(r"\{(\w+)(?::\w+)?\}", path)) & params
        and path.startswith(("/api/v1/training/jobs/", "/api/v1/projects/", "/api/v1/datasets/"))
        and "/callback/" not in path
    ]


def test_another_projects_rows_do_not_exist_for_a_key(
    api: TestClient, app: FastAPI, db: Database, world: World
) -> None:
    before = snapshot(db)
    routes = scoped_routes(app)
    assert len(routes) >= 15
    for method, path in routes:
        kwargs = BODIES.get((method, path), {} if method in {"GET", "DELETE"} else {"json": {}})
        response = api.request(
            method,
            fill(path, alpha_ids(world)),
            headers=world.headers("member_beta"),
            params={"other": world.version},
            **kwargs,
        )
        if response.status_code == 422 and (method, path) not in BODIES and method not in {"GET", "DELETE"}:
            continue  # a body we do not know how to fill was refused before any row was read
        body = assert_problem(response, 404)
        assert body["code"] == "NOT_FOUND"
    assert snapshot(db) == before
    # The same requests with a key for alpha reach the rows (a GET of each works).
    for method, path in routes:
        if method == "GET" and "events" not in path:
            response = api.get(
                fill(path, alpha_ids(world)),
                headers=world.headers("member_alpha"),
                params={"other": world.version},
            )
            assert response.status_code == 200, (path, response.text)


def test_a_viewer_cannot_write_anywhere(api: TestClient, app: FastAPI, db: Database, world: World) -> None:
    before = snapshot(db)
    writes = [
        (method, path)
        for method, path, route in api_routes(app)
        if method not in {"GET", "HEAD"} and not marked(route, "public") and not marked(route, "read_only")
    ]
    assert len(writes) >= 12
    for method, path in writes:
        response = call(api, method, fill(path, alpha_ids(world)), world.headers("viewer_alpha"))
        body = assert_problem(response, 403)
        assert body["code"] == "FORBIDDEN"
    assert snapshot(db) == before
    # ... but reads, and the POSTs that write nothing.
    assert api.get(
        f"/api/v1/training/jobs/{world.alpha_job}", headers=world.headers("viewer_alpha")
    ).is_success
    resolved = api.post(
        "/api/v1/training/config/resolve", json={"task": "detection"}, headers=world.headers("viewer_alpha")
    )
    assert resolved.status_code == 200
