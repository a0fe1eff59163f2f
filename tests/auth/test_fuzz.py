"""Fuzzing the whole OpenAPI document with schemathesis: the real app in-process, on a SQLite file and
the test Redis, called with an admin key and with a member key scoped to one project. No generated
request (valid or not) may be answered with a 5xx, and every error is `application/problem+json`.

The budget is small by default (CI); `make fuzz` raises it with TRAINYARD_FUZZ_EXAMPLES.
"""

import os
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode

from app.core.errors import PROBLEM_JSON
from tests.auth.conftest import World

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("TRAINYARD_FUZZ_EXAMPLES", "4"))


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """A SQLite file only: the fuzz budget is spent once (PostgreSQL has the other tests)."""
    return sqlite_url


def test_no_request_is_a_server_error(app: FastAPI, world: World) -> None:
    # Strategies per operation rather than schemathesis' pytest plugin, whose lazy loading (needed for an
    # app that lives in fixtures) does not run under pytest 9.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            # A running job's stream ends only when the job does; its inputs are tested apart
            # (tests/auth/test_malformed_input.py, tests/integration/test_events.py).
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation.as_strategy(generation_mode=mode), world)
            except AssertionError as exc:
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
        checked += 1
    assert checked > 40
    assert failures == [], "\n".join(failures)


def _fuzz(cases: SearchStrategy[Any], world: World) -> None:
    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=os.environ.get("TRAINYARD_FUZZ_EXAMPLES") is None,  # CI: the same cases every run
        database=None,
    )
    def run(case: Any) -> None:
        for who in ("admin", "member_alpha"):
            response = case.call(headers={**(case.headers or {}), **world.headers(who)})
            where = f"{who}: {case.method} {case.formatted_path} {case.query or ''} -> {response.status_code}"
            assert response.status_code < 500, f"{where} {response.text[:300]}"
            if response.status_code >= 400:
                content_type = response.headers.get("content-type", [""])[0]  # lower-case keys, lists
                assert content_type.startswith(PROBLEM_JSON), f"{where} {content_type} {response.text[:300]}"

    run()
