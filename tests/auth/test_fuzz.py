"""Fuzzing the whole OpenAPI document with schemathesis: the real app in-process, on a SQLite file and
the test Redis, called with an admin key and with a member key scoped to one project. No generated
request (valid or not) may be answered with a 5xx, and every error is `application/problem+json`.

The budget is small by default (CI): a few generated cases per operation. `make fuzz` sets
TRAINYARD_FUZZ_EXAMPLES, which raises that count and adds schemathesis' coverage phase (boundary cases
for every parameter: ids past 64 bits, empty and over-long strings, wrong types...), minutes long.
In CI those boundaries are held by tests/auth/test_malformed_input.py instead.
"""

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test

from app.core.problems import PROBLEM_JSON
from tests.auth.conftest import World

pytestmark = pytest.mark.integration

LONG_RUN = "TRAINYARD_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("TRAINYARD_FUZZ_EXAMPLES", "5"))
PHASES = list(HypothesisTestMode) if LONG_RUN else [HypothesisTestMode.FUZZING]


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """A SQLite file only: the fuzz budget is spent once (PostgreSQL has the other tests)."""
    return sqlite_url


def test_no_request_is_a_server_error(app: FastAPI, world: World) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(modes=list(GenerationMode))  # valid and invalid input
    failures: list[str] = []
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            # A running job's stream ends only when the job does; its inputs are tested apart
            # (tests/auth/test_malformed_input.py, tests/training/test_events.py).
            continue
        try:
            _fuzz(schema, operation, world)()
        except Exception as exc:  # one assertion, or a group of them (one per failing explicit case)
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:2000]}")
        checked += 1
    assert checked > 40
    assert failures == [], "\n".join(failures)


def _fuzz(schema: Any, operation: Any, world: World) -> Callable[[], None]:
    """One operation's test: EXAMPLES generated cases, each valid or not (in a long run also the schema's
    examples and the coverage phase's cases). This is what schemathesis' pytest plugin builds; its lazy
    loading (needed for an app that lives in fixtures) does not run under pytest 9, so it is built here."""

    def run(case: Any) -> None:
        for who in ("admin", "member_alpha"):
            response = case.call(headers={**(case.headers or {}), **world.headers(who)})
            where = f"{who}: {case.method} {case.formatted_path} {case.query or ''} -> {response.status_code}"
            assert response.status_code < 500, f"{where} {response.text[:300]}"
            if response.status_code >= 400:
                content_type = response.headers.get("content-type", [""])[0]  # lower-case keys, lists
                assert content_type.startswith(PROBLEM_JSON), f"{where} {content_type} {response.text[:300]}"

    budget = settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=not LONG_RUN,  # CI: the same cases every run
        database=None,
    )
    config = HypothesisTestConfig(project=schema.config, modes=PHASES, settings=budget)
    test: Callable[[], None] = create_test(operation=operation, test_func=run, config=config)
    return test
