"""A cold load runs beside the worker's queue: requests for warm models keep being answered while a
model loads. A real API and CPU worker; the load is made slow (TRAINYARD_FAULT_SLOW_LOAD stands in for
a large model read from S3), the models are untrained YOLO11n checkpoints registered as ready."""

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from app.core import migrate
from app.core.db import Database
from tests.conftest import make_api_key
from tests.factories import register_untrained_model
from tests.support.fleet import with_injector
from tests.support.stack import TRAINYARD, free_port, running, wait_for
from workers.ultralytics.offline import prepare_offline

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SLOW_LOAD_SECONDS = 4.0


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (30, 160, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, stack_redis_url: str
) -> Iterator[tuple[httpx.Client, int, int]]:
    root = tmp_path_factory.mktemp("cold-loads")
    prepare_offline(root / "ultralytics")
    from ultralytics import YOLO

    weights = root / "yolo11n.pt"
    YOLO("yolo11n.yaml").save(weights)
    database_url = f"sqlite:///{root / 'trainyard.db'}"
    migrate.upgrade(database_url)
    db = Database(database_url)
    key = make_api_key(db)
    with db.session() as session:
        warm = register_untrained_model(session, root / "data" / "storage", weights, "cold", "warm", 64)
        cold = register_untrained_model(session, root / "data" / "storage", weights, "cold", "cold", 64)
    db.dispose()
    env = {
        "TRAINYARD_DATA_DIR": str(root / "data"),
        "DATABASE_URL": database_url,
        "REDIS_URL": stack_redis_url,
        "TRAINYARD_FAULT_SLOW_LOAD": str(SLOW_LOAD_SECONDS),
        "PYTHONPATH": with_injector(),  # what reads the variable: tests/support/inject/sitecustomize.py
    }
    port = free_port()
    with (
        running([*TRAINYARD, "api", "--port", str(port)], env, root / "api.log"),
        running([*TRAINYARD, "worker", "--device", "cpu", "--name", "cold-loads"], env, root / "worker.log"),
    ):
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/health", root / "worker.log", workers=1)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            yield http, warm, cold


def infer(http: httpx.Client, model_id: int) -> dict[str, Any]:
    files = [("files", ("a.jpg", jpeg(), "image/jpeg"))]
    response = http.post("/api/v1/inference", files=files, data={"model_id": str(model_id)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_warm_requests_are_answered_while_another_model_loads(served: tuple[httpx.Client, int, int]) -> None:
    http, warm, cold = served
    first = infer(http, warm)
    assert first["cache_hit"] is False and first["timing_ms"]["load"] >= SLOW_LOAD_SECONDS * 1000

    answered: dict[str, Any] = {}

    def cold_request() -> None:
        answered["reply"] = infer(http, cold)
        answered["at"] = time.monotonic()

    loading = threading.Thread(target=cold_request)
    loading.start()
    time.sleep(0.5)  # the cold request is the worker's first message
    warm_replies = []
    for _ in range(3):
        warm_replies.append(infer(http, warm))
        assert "at" not in answered, "a warm request waited for the cold load"
    loading.join(SLOW_LOAD_SECONDS * 5)

    assert all(r["cache_hit"] for r in warm_replies)
    assert answered["reply"]["cache_hit"] is False
    assert answered["reply"]["timing_ms"]["load"] >= SLOW_LOAD_SECONDS * 1000
    assert answered["reply"]["model_id"] == cold and all(r["model_id"] == warm for r in warm_replies)


def test_a_request_for_a_model_being_loaded_waits_for_that_load_only(
    served: tuple[httpx.Client, int, int],
) -> None:
    """Unload, then two requests for the same model: one load, the second is a hit after it."""
    http, warm, _ = served
    unloaded = http.post("/api/v1/workers/cold-loads/models", json={"action": "unload", "model_id": warm})
    assert unloaded.status_code == 200, unloaded.text
    replies: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: replies.append(infer(http, warm))) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join(SLOW_LOAD_SECONDS * 5)
    assert sorted(r["cache_hit"] for r in replies) == [False, True]
    state = http.get("/api/v1/workers/cold-loads/models").json()
    assert state["models"][0]["model_id"] == warm
