"""Malformed input from callers with no key, a bad key or a good one: ids past 64 bits anywhere, odd
Unicode in tokens and ids, oversized bodies behind a bogus key, times at the ends of the calendar,
names longer than a file system takes, request ids that would bloat the logs. Each is a 4xx
problem+json, never a 500, and nothing about the server (paths, workers, pids) leaks."""

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.core import auth
from app.core.db import Database
from app.core.inputs import MAX_INT
from app.core.workers import announce
from tests.auth.conftest import World, assert_problem, snapshot
from tests.conftest import clear_caches

pytestmark = pytest.mark.integration

TOO_BIG = MAX_INT + 1


@pytest.fixture
def admin(api: TestClient, world: World) -> Iterator[TestClient]:
    with TestClient(api.app, headers=world.headers("admin")) as client:
        yield client


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _integers(document: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The integer schemas among `schema` and its anyOf (an optional field is integer | null)."""
    schema = _resolve(document, schema)
    options = [_resolve(document, s) for s in schema.get("anyOf", [schema])]
    return [s for s in options if s.get("type") == "integer"]


def request_integers(app: FastAPI) -> Iterator[tuple[str, str, str, str, dict[str, Any]]]:
    """(method, path, where, name, schema) of every integer a request can carry: path, query and header
    parameters and the top-level fields of JSON and form bodies."""
    document = app.openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                for schema in _integers(document, parameter["schema"]):
                    yield method.upper(), path, parameter["in"], parameter["name"], schema
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                body = _resolve(document, content["schema"])
                for name, prop in body.get("properties", {}).items():
                    for schema in _integers(document, prop):
                        yield method.upper(), path, media, name, schema


def test_every_integer_a_request_carries_is_bounded(app: FastAPI) -> None:
    """The guard for the future: a new route with a bare `int` fails here (use app.core.inputs.Id)."""
    unbounded = [
        f"{method} {path} {where}:{name}"
        for method, path, where, name, schema in request_integers(app)
        if "maximum" not in schema
        and "/callback/" not in path  # the trainer callbacks: tests/trainer_contract
    ]
    assert unbounded == []


def fill(path: str, name: str) -> str:
    """The path with TOO_BIG for the parameter `name` and 1 for the others."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(TOO_BIG if m.group(1) == name else 1), path)


def test_an_integer_past_64_bits_is_422_naming_it_on_every_route(
    admin: TestClient, app: FastAPI, db: Database, world: World
) -> None:
    before = snapshot(db)
    checked = 0
    for method, path, where, name, _schema in request_integers(app):
        url = fill(path, name)
        options: dict[str, Any] = {}
        if where == "query":
            options["params"] = {name: str(TOO_BIG)}
        elif where == "header":
            options["headers"] = {name: str(TOO_BIG)}
        elif where == "application/json":
            options["json"] = {name: TOO_BIG}
        elif where.startswith("multipart/") or where.startswith("application/x-www-form"):
            options["data"] = {name: str(TOO_BIG)}
        response = admin.request(method, url, **options)
        if "/callback/" in path:  # no job token: refused before anything is parsed
            assert_problem(response, 401)
            continue
        body = assert_problem(response, 422)
        fields = [e["field"] for e in body["errors"]]  # type: ignore[union-attr]
        assert any(f == name or f.endswith(f".{name}") for f in fields), (method, url, where, body)
        checked += 1
    assert checked > 30
    assert snapshot(db) == before


ODD_DIGITS = ["²", "١٢", "߁", "\U0001d7d9", "1²", "٣" * 30]  # superscript, Arabic, N'Ko, math digits


def test_odd_unicode_in_stream_tokens_and_job_ids_is_refused_not_a_500(api: TestClient, world: World) -> None:
    job = world.alpha_job
    token = api.post(f"/api/v1/training/jobs/{job}/stream-token", headers=world.headers("admin")).json()[
        "token"
    ]
    prefix, job_part, key_part, expires, signature = token.split(".")
    bad_tokens = [f"{prefix}.{d}.{key_part}.{expires}.{signature}" for d in ODD_DIGITS]
    bad_tokens += [f"{prefix}.{job_part}.{d}.{expires}.{signature}" for d in ODD_DIGITS]
    bad_tokens += [f"{prefix}.{job_part}.{key_part}.{d}.{signature}" for d in ODD_DIGITS]
    bad_tokens += [
        f"{prefix}.{job_part}.{key_part}.{expires}.{s}" for s in ("ñ" * 43, "é", "😀", signature + "²")
    ]
    for bad in bad_tokens:
        assert_problem(api.get(f"/api/v1/training/jobs/{job}/events", params={"token": bad}), 401)
    for odd in ODD_DIGITS:
        events = f"/api/v1/training/jobs/{odd}/events"
        assert_problem(api.get(events, params={"token": token}), 401)  # the token is for another job
        assert_problem(api.get(events), 401)
        assert_problem(api.get(events, headers=world.headers("admin")), 422)
        assert_problem(api.get(f"/api/v1/training/jobs/{odd}", headers=world.headers("admin")), 422)


def test_odd_unicode_in_an_api_key_is_401(api: TestClient, world: World) -> None:
    real = world.keys["admin"]
    for key in ("ty_²²²²²²²²_" + "x" * 43, "ty_0badc0de_" + "ñ" * 43, real[:-1] + "²", real + "\u00a0", "😀"):
        header = f"Bearer {key}".encode()
        assert_problem(api.get("/api/v1/projects", headers={"Authorization": header}), 401)  # type: ignore[dict-item]


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINYARD_MAX_BODY_MB", "0.01")  # ~10 KB
    monkeypatch.setenv("TRAINYARD_MAX_UPLOAD_MB", "0.05")  # ~50 KB
    clear_caches()


def raw_call(
    app: FastAPI, path: str, headers: dict[str, str], declared: int | None, body: bytes
) -> tuple[int, int]:
    """POST straight to the ASGI app, declaring `declared` bytes (None: no Content-Length) and offering
    `body` in 8 KB chunks; returns (status, bytes the app took). The test client would buffer the whole
    body before the app saw any of it."""
    chunks = [body[i : i + 8192] for i in range(0, len(body), 8192)]
    taken = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal taken
        if not chunks:
            return {"type": "http.disconnect"}
        chunk = chunks.pop(0)
        taken += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-type", b"multipart/form-data; boundary=" + BOUNDARY.encode()))
    if declared is not None:
        raw.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return status, taken


BOUNDARY = "trainyard-test"
JUNK = b"x" * 1024 * 1024


def dataset_form(size: int, project_id: int = 1) -> bytes:
    """A dataset upload of `size` bytes (its file is no ZIP: a 422 once read)."""
    parts = [("project_id", str(project_id).encode()), ("name", b"big")]
    head = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v + b"\r\n"
        for k, v in parts
    )
    head += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="d.zip"\r\n\r\n'.encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head + b"z" * (size - len(head) - len(tail)) + tail


def test_a_bogus_key_does_not_lift_the_upload_limit(app: FastAPI, world: World) -> None:
    """200 MB declared behind `Bearer not-a-key`: refused before one byte of the body is read."""
    big = 200 * 1024 * 1024
    for headers, status in (
        ({"Authorization": "Bearer not-a-key"}, 401),
        ({"Authorization": "Bearer ty_0badc0de_" + "x" * 43}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ({}, 413),
    ):
        for path in (
            "/api/v1/datasets",
            f"/api/v1/datasets/{world.dataset}/annotations",
            "/api/v1/inference",
        ):
            assert raw_call(app, path, headers, big, JUNK) == (status, 0), (headers, path)
    # A revoked key is no better.
    assert raw_call(app, "/api/v1/datasets", world.headers("revoked"), big, JUNK) == (401, 0)


def test_a_bogus_key_cannot_stream_past_the_small_limit(
    app: FastAPI, world: World, small_limits: None
) -> None:
    """No Content-Length to judge by: the key is checked when the body passes the small limit."""
    form = dataset_form(1024 * 1024)
    status, taken = raw_call(app, "/api/v1/datasets", {"Authorization": "Bearer not-a-key"}, None, form)
    assert status == 401 and taken <= 16 * 1024


def test_a_valid_key_lifts_the_limit_with_one_key_lookup(
    app: FastAPI, db: Database, world: World, small_limits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty cache of recent keys that outlives the test: its first request looks the key up once (the
    # body limit's lookup serves the request too), the second finds it in the cache.
    monkeypatch.setattr(auth, "recent_keys", auth.RecentKeys(seconds=3600))
    lookups: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM api_keys" in statement:
            lookups.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        body = dataset_form(40 * 1024, world.alpha)
        status, taken = raw_call(app, "/api/v1/datasets", world.headers("admin"), len(body), body)
        small = dataset_form(8 * 1024, world.alpha)
        small_status, _ = raw_call(app, "/api/v1/datasets", world.headers("admin"), len(small), small)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert (status, taken) == (422, len(body))  # read whole, past the small limit: not a ZIP
    assert small_status == 422
    assert len(lookups) == 1, lookups  # not one more for raising the limit
    # A valid key still has a ceiling.
    large = dataset_form(100 * 1024)
    assert raw_call(app, "/api/v1/datasets", world.headers("admin"), len(large), large)[0] == 413


def test_health_without_a_key_says_only_whether_it_is_alive(
    api: TestClient, world: World, redis_client: Any
) -> None:
    announce(redis_client, "gpu-7", {"id": "gpu-7", "host": "secret-host", "pid": 4242, "current_job": 99})
    public = api.get("/health")
    assert public.status_code == 200
    assert public.json() == {
        "status": "ok",
        "database": {"ok": True},
        "redis": {"ok": True},
        "workers": {"ok": True, "count": 1},
    }
    detailed = api.get("/health", headers=world.headers("viewer_alpha")).json()
    assert detailed["workers"]["workers"][0]["host"] == "secret-host"
    assert_problem(api.get("/health", headers={"Authorization": "Bearer not-a-key"}), 401)


def test_a_request_id_is_echoed_only_when_short_and_plain(api: TestClient) -> None:
    assert (
        api.get("/health", headers={"X-Request-ID": "web-1.a_b-C"}).headers["x-request-id"] == "web-1.a_b-C"
    )
    for bad in ("x" * 5000, "x" * 65, "a b", "a/b", "ñ", "a\tb", "{json}", ""):
        response = api.get("/api/v1/projects", headers={"X-Request-ID": bad.encode()})  # type: ignore[dict-item]
        minted = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", minted), minted
        assert response.json()["request_id"] == minted


@pytest.mark.parametrize(
    ("moment", "status"),
    [
        ("0001-01-01T00:00:00", 200),
        ("0001-01-01T00:00:00Z", 200),
        ("0001-01-01T00:00:00-05:00", 200),
        ("0001-01-01T00:00:00+05:00", 422),
        ("9999-12-31T23:59:59.999999", 200),
        ("9999-12-31T23:59:59+05:00", 200),
        ("9999-12-31T23:59:59-05:00", 422),
        ("10000-01-01T00:00:00", 422),
    ],
)
def test_log_queries_at_the_ends_of_the_calendar(
    admin: TestClient, world: World, moment: str, status: int
) -> None:
    for name in ("since", "until"):
        response = admin.get(f"/api/v1/training/jobs/{world.alpha_job}/logs", params={name: moment})
        if status == 200:
            assert response.status_code == 200, response.text
        else:
            body = assert_problem(response, status)
            assert body["errors"][0]["field"] == name  # type: ignore[index]


def test_a_release_name_longer_than_a_file_name_is_422(admin: TestClient, db: Database) -> None:
    before = snapshot(db)
    key = "projects/alpha/releases/" + "r" * 300 + ".zip"
    for response in (
        admin.post("/api/v1/training/extract-release", json={"zip_path": key}),
        admin.get("/api/v1/training/check-extracted", params={"zip_path": key}),
        admin.delete("/api/v1/training/releases", params={"zip_path": key}),
    ):
        body = assert_problem(response, 422)
        assert body["errors"] == [
            {"field": "zip_path", "reason": "a folder or file name is longer than 255 bytes"}
        ]
    assert snapshot(db) == before
