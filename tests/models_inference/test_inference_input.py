"""Bad images and keys in inference requests, without a worker: the API refuses them before anything is
stored or queued, and says why in words a client can use (no Python object, no module name). The worker's
own decoding is tested beside, with Ultralytics imported as in a worker."""

import io
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from app.core.db import Database
from app.core.errors import ErrorCode
from app.core.settings import get_settings
from tests.auth.conftest import redis_state
from tests.conftest import clear_caches
from tests.dataset_api.conftest import assert_problem, files_under
from tests.factories import register_untrained_model

pytestmark = pytest.mark.integration


def jpeg(size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 20, 20)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def model_id(db: Database, storage_root: Path, tmp_path: Path) -> int:
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"never loaded here")
    with db.session() as session:
        return register_untrained_model(session, storage_root, weights, "demo", "detector", 64)


def test_a_refused_inference_job_stores_and_queues_nothing(
    client: TestClient,
    db: Database,
    model_id: int,
    storage_root: Path,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One good image with a bad key or a bad second image: refused, and no inputs/ folder left behind."""
    monkeypatch.setenv("TRAINYARD_INFERENCE_MAX_IMAGE_MB", "0.01")  # ~10 KB
    clear_caches()
    good = ("files", ("good.jpg", jpeg(), "image/jpeg"))
    cases = [
        ({"keys": "projects/demo/missing.png"}, [good], 404, ErrorCode.NOT_FOUND),
        ({"keys": "../etc/passwd"}, [good], 422, ErrorCode.VALIDATION_ERROR),
        ({"keys": "projects/demo/" + "n" * 300}, [good], 422, ErrorCode.VALIDATION_ERROR),  # no such name
        ({}, [good, ("files", ("notes.txt", b"hello", "text/plain"))], 422, ErrorCode.INVALID_IMAGE),
        (
            {},
            [good, ("files", ("big.bmp", b"BM" + b"\x00" * 20_000, "image/bmp"))],
            413,
            ErrorCode.IMAGE_TOO_LARGE,
        ),
    ]
    before = (files_under(storage_root), redis_state(redis_client))
    for form, files, status, code in cases:
        response = client.post(
            "/api/v1/inference/jobs", data={"model_id": str(model_id), **form}, files=files
        )
        assert assert_problem(response, status)["code"] == code
        assert (files_under(storage_root), redis_state(redis_client)) == before, response.text
    accepted = client.post("/api/v1/inference/jobs", data={"model_id": str(model_id)}, files=[good, good])
    assert accepted.status_code == 202, accepted.text
    inputs = storage_root / "inference/jobs" / accepted.json()["id"] / "inputs"
    assert sorted(p.name for p in inputs.iterdir()) == ["00000-good.jpg", "00001-good.jpg"]


def test_an_image_error_names_no_python_object(client: TestClient, model_id: int) -> None:
    for route in ("/api/v1/inference", "/api/v1/inference/jobs"):
        response = client.post(
            route, data={"model_id": str(model_id)}, files=[("files", ("notes.txt", b"hello", "text/plain"))]
        )
        body = assert_problem(response, 422)
        assert body["detail"] == "notes.txt: not an image (unknown format)", body
        assert "0x" not in response.text and "_io" not in response.text


def test_a_worker_refuses_a_file_that_is_not_an_image_with_422() -> None:
    """With Ultralytics imported (as in a worker), PIL.Image.open tries the pi-heif plugin on a file it
    cannot identify; the worker still answers 422 INVALID_IMAGE, naming no module."""
    import ultralytics  # noqa: F401  (patches PIL.Image.open)

    from workers.inference.predictor import InferenceError, decode

    max_pixels = get_settings().inference_max_pixels
    for name, data, words in (
        ("notes.txt", b"hello, not an image", "not an image (unknown format)"),
        ("cut.jpg", jpeg(64)[:300], "a corrupt or truncated image"),
    ):
        with pytest.raises(InferenceError) as refused:
            decode(name, data, max_pixels)
        assert (refused.value.status, refused.value.code) == (422, ErrorCode.INVALID_IMAGE)
        assert refused.value.detail == f"{name}: {words}"
