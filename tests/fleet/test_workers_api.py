"""The workers API (app/fleet): each worker's registry entry as a typed record, with where it runs and
what it keeps on disk; an entry of an older worker that did not report those reads as null."""

from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.workers import announce
from app.main import create_app

pytestmark = pytest.mark.integration


@pytest.fixture
def api(db: Database, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(db), headers=admin_headers) as client:
        yield client


def test_a_worker_shows_its_host_caches_and_free_disk(api: TestClient, redis_client: redis.Redis) -> None:
    announce(
        redis_client,
        "rack-9-gpu0",
        {
            "id": "rack-9-gpu0",
            "host": "rack-9",
            "device": "0",
            "queues": ["training"],
            "cache_bytes": 123456,
            "disk_free_bytes": 10 * 2**30,
            "disk_total_bytes": 100 * 2**30,
            "some_future_field": "not part of the record",
        },
    )
    announce(redis_client, "old-gpu1", {"id": "old-gpu1", "host": "old", "device": "1"})
    listed = api.get("/api/v1/workers").json()
    assert listed["total"] == 2
    fresh, old = (next(w for w in listed["items"] if w["id"] == i) for i in ("rack-9-gpu0", "old-gpu1"))
    assert (fresh["host"], fresh["cache_bytes"], fresh["disk_free_bytes"], fresh["disk_total_bytes"]) == (
        "rack-9",
        123456,
        10 * 2**30,
        100 * 2**30,
    )
    assert fresh["status"] == "online" and "some_future_field" not in fresh
    assert (old["cache_bytes"], old["disk_free_bytes"], old["disk_total_bytes"]) == (None, None, None)
    assert api.get("/api/v1/workers/rack-9-gpu0").json() == fresh


def test_the_fields_are_documented_in_the_openapi_schema(api: TestClient) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    fields = schemas["WorkerRead"]["properties"]
    for name in ("host", "cache_bytes", "disk_free_bytes", "disk_total_bytes"):
        assert fields[name]["description"], name
    assert schemas["JobRead"]["properties"]["attempts"]["items"]["$ref"].endswith("/AttemptRead")
