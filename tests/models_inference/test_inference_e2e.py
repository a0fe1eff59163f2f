"""Models and inference for real: API + worker processes on a SQLite file and the test Redis. Two tiny
models are trained (a detector and a classifier), registered with their lineage, validated by the worker
(status `ready`), deployed, and used through POST /inference; the worker's model cache (one model at a
time here) hits, evicts and unloads; bad input gets problem+json and the worker keeps serving.
"""

import io
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from PIL import Image

from tests.factories import make_yolo_dataset
from tests.support.stack import (
    TRAINYARD,
    api_and_worker,
    sqlite_env,
    tail,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKER = "infer-e2e"


@dataclass
class Stack:
    url: str
    http: httpx.Client
    storage: Path
    root: Path

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.http.get(path, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def infer(self, images: list[tuple[str, bytes]], **form: Any) -> httpx.Response:
        files = [("files", (name, data, "application/octet-stream")) for name, data in images]
        return self.http.post("/api/v1/inference", files=files, data={k: str(v) for k, v in form.items()})


def make_classes_dataset(root: Path, per_class: int = 8, size: int = 32) -> Path:
    """ImageFolder layout (train/<class>/, val/<class>/): red and blue squares on grey."""
    for split, count in (("train", per_class), ("val", 2)):
        for name, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = Image.new("RGB", (size, size), (90 + i, 90, 90))
                image.paste(colour, (4 + i % 4, 4, size - 4, size - 4 - i % 3))
                image.save(folder / f"{i}.jpg")
    return root


def jpeg(size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = (200, 20, 20)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_redis_url: str) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("inference")
    env = {
        **sqlite_env(root, stack_redis_url, tmp_path_factory.getbasetemp()),
        "TRAINYARD_MODEL_CACHE_SIZE": "1",  # so the two models evict each other
        "TRAINYARD_INFERENCE_MAX_PIXELS": "1000000",
    }
    with (
        api_and_worker(root, env, WORKER) as (url, key),
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http,
    ):
        yield Stack(url, http, root / "data" / "storage", root)


def train(stack: Stack, name: str, task: str, model: str, dataset: Path, imgsz: int) -> dict[str, Any]:
    body = {
        "name": name,
        "project": "vision",
        "task_type": task,
        "model_name": model,
        "dataset_path": str(dataset),
        "config": {"epochs": 1, "imgsz": imgsz, "batch": 4, "workers": 0, "plots": False},
    }
    response = stack.http.post("/api/v1/training/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


@pytest.fixture(scope="module")
def models(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """A detector and a classifier, trained, registered and validated (`ready`) by the worker."""
    base = tmp_path_factory.mktemp("data")
    shapes = make_yolo_dataset(base / "shapes", train=8, val=4, size=64)
    classes = make_classes_dataset(base / "classes")
    jobs = {
        "detection": train(stack, "detector", "detection", "yolo11n", shapes, 64),
        "classification": train(stack, "classifier", "classification", "yolo11n", classes, 32),
    }
    found: dict[str, dict[str, Any]] = {}
    for task, job in jobs.items():

        def ready(job_id: int = job["id"]) -> dict[str, Any] | None:
            current = stack.get(f"/api/v1/training/jobs/{job_id}")
            assert current["status"] not in {"failed", "cancelled"}, current
            items = stack.get("/api/v1/models", params={"project": "vision"})["items"]
            model = next((m for m in items if m["lineage"]["job_id"] == job_id), None)
            assert model is None or model["status"] != "failed", model
            return model if model is not None and model["status"] == "ready" else None

        found[task] = wait_until(
            ready, f"the {task} model never became ready", tail(stack.root / "worker.log"), timeout=300
        )
    return found


def test_registry_records_lineage_of_real_jobs(stack: Stack, models: dict[str, dict[str, Any]]) -> None:
    detector, classifier = models["detection"], models["classification"]
    assert detector["class_names"] == ["red", "blue"] and detector["imgsz"] == 64
    assert sorted(classifier["class_names"]) == ["blue", "red"] and classifier["imgsz"] == 32
    for model in (detector, classifier):
        assert set(model["lineage"]["package_versions"]) == {"ultralytics", "torch"}
        assert model["metrics"] and model["job_status"] == "completed"
        assert model["lineage"]["config"]["epochs"] == 1
        assert (stack.storage / model["weights_key"]).is_file()
    weights = stack.http.get(f"/api/v1/models/{detector['id']}/weights")
    assert (
        weights.status_code == 200
        # the worker's lean copy (tests/weights/test_weights_e2e.py), not the job's best.pt
        and weights.content == (stack.storage / detector["exported_key"]).read_bytes()
    )
    # The same job registered once, whatever else happened.
    assert stack.get("/api/v1/models", params={"project": "vision"})["total"] == 2


def test_detection_and_classification_through_the_worker(
    stack: Stack, models: dict[str, dict[str, Any]]
) -> None:
    detector, classifier = models["detection"], models["classification"]
    project = detector["project_id"]
    deployed = stack.http.post(f"/api/v1/projects/{project}/deployments", json={"model_id": detector["id"]})
    assert deployed.status_code == 201, deployed.text

    # No model_id: the project's active detection model. conf=0 so an undertrained model still boxes.
    first = stack.infer(
        [("a.jpg", jpeg()), ("b.jpg", jpeg(colour=(20, 20, 200)))],
        project_id=project,
        task="detection",
        conf=0.0,
        max_det=5,
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["model_id"] == detector["id"] and body["worker"] == WORKER and len(body["results"]) == 2
    detection = body["results"][0]["detections"][0]
    assert len(detection["box"]) == 4 and detection["class_name"] in {"red", "blue"}
    assert 0.0 <= detection["confidence"] <= 1.0 and len(body["results"][0]["detections"]) <= 5
    assert {"queue", "predict", "round_trip"} <= set(body["timing_ms"])

    second = stack.infer([("a.jpg", jpeg())], model_id=detector["id"], conf=0.0).json()
    assert second["cache_hit"] is True, "the second request for a model must not load it again"

    classified = stack.infer([("r.jpg", jpeg((32, 32)))], model_id=classifier["id"], top_k=2)
    assert classified.status_code == 200, classified.text
    top = classified.json()["results"][0]["top_k"]
    assert len(top) == 2 and {t["class_name"] for t in top} == {"red", "blue"}
    assert abs(sum(t["confidence"] for t in top) - 1.0) < 1e-3


def test_model_cache_hits_evicts_at_its_bound_and_unloads(
    stack: Stack, models: dict[str, dict[str, Any]]
) -> None:
    detector, classifier = models["detection"], models["classification"]
    assert stack.infer([("a.jpg", jpeg())], model_id=detector["id"]).status_code == 200
    state = stack.get(f"/api/v1/workers/{WORKER}/models")
    loads, evictions = state["loads"], state["evictions"]
    assert [m["model_id"] for m in state["models"]] == [detector["id"]] and state["max_models"] == 1

    assert stack.infer([("a.jpg", jpeg())], model_id=detector["id"]).json()["cache_hit"] is True
    assert stack.get(f"/api/v1/workers/{WORKER}/models")["loads"] == loads

    assert stack.infer([("a.jpg", jpeg((32, 32)))], model_id=classifier["id"]).json()["cache_hit"] is False
    state = stack.get(f"/api/v1/workers/{WORKER}/models")
    assert [m["model_id"] for m in state["models"]] == [classifier["id"]]
    assert state["evictions"] == evictions + 1 and state["loads"] == loads + 1
    assert stack.infer([("a.jpg", jpeg())], model_id=detector["id"]).json()["cache_hit"] is False

    unloaded = stack.http.post(
        f"/api/v1/workers/{WORKER}/models", json={"action": "unload", "model_id": detector["id"]}
    )
    assert unloaded.status_code == 200 and unloaded.json()["unloaded"] is True
    assert stack.get(f"/api/v1/workers/{WORKER}/models")["models"] == []
    loaded = stack.http.post(
        f"/api/v1/workers/{WORKER}/models", json={"action": "load", "model_id": detector["id"]}
    )
    assert loaded.status_code == 200, loaded.text
    assert stack.infer([("a.jpg", jpeg())], model_id=detector["id"]).json()["cache_hit"] is True


def test_bad_input_is_refused_and_the_worker_keeps_serving(
    stack: Stack, models: dict[str, dict[str, Any]]
) -> None:
    detector, classifier = models["detection"], models["classification"]

    def problem(response: httpx.Response, status: int, code: str) -> None:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code

    problem(
        stack.infer([("notes.txt", b"hello, not an image")], model_id=detector["id"]), 422, "INVALID_IMAGE"
    )
    notes = stack.storage / "projects" / "vision" / "notes.txt"  # a storage key the worker decodes
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_bytes(b"hello, not an image")
    form = {"model_id": str(detector["id"]), "keys": "projects/vision/notes.txt"}
    by_key = stack.http.post("/api/v1/inference", data=form)
    problem(by_key, 422, "INVALID_IMAGE")
    assert "pi_heif" not in by_key.text and "0x" not in by_key.text
    truncated = jpeg((64, 64))[:300]  # a valid header, then nothing: only a full decode notices
    problem(stack.infer([("cut.jpg", truncated)], model_id=detector["id"]), 422, "INVALID_IMAGE")
    problem(stack.infer([("huge.png", _png((1200, 1000)))], model_id=detector["id"]), 413, "IMAGE_TOO_LARGE")
    problem(
        stack.infer([("a.jpg", jpeg())], model_id=detector["id"], task="classification"),
        422,
        "VALIDATION_ERROR",
    )
    problem(
        stack.infer([("a.jpg", jpeg())], model_id=detector["id"], project_id=detector["project_id"] + 99),
        422,
        "VALIDATION_ERROR",
    )
    problem(stack.infer([("a.jpg", jpeg())], model_id=424242), 404, "NOT_FOUND")
    problem(stack.infer([], model_id=classifier["id"]), 422, "VALIDATION_ERROR")

    after = stack.infer([("a.jpg", jpeg())], model_id=detector["id"])
    assert after.status_code == 200, "the worker must keep serving after bad input"


def test_a_large_batch_runs_as_an_inference_job(stack: Stack, models: dict[str, dict[str, Any]]) -> None:
    detector = models["detection"]
    files = [("files", (f"{i}.jpg", jpeg(), "image/jpeg")) for i in range(40)]
    response = stack.http.post("/api/v1/inference/jobs", files=files, data={"model_id": str(detector["id"])})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["images"] == 40 and job["chunks"] == 3

    events = []
    with connect_sse(stack.http, "GET", job["events_url"]) as source:
        for sse in source.iter_sse():
            events.append((sse.event, json.loads(sse.data)))
    assert [name for name, _ in events[:-1]] == ["progress"] * (len(events) - 1)
    done = [data["chunks_done"] for _, data in events[:-1]]
    assert done == sorted(set(done)) and done[-1] == 3, "progress must only move forward, to the end"
    assert events[-1][0] == "status" and events[-1][1]["status"] == "completed"

    state = stack.get(f"/api/v1/inference/jobs/{job['id']}")
    assert state["status"] == "completed" and state["progress"] == 1.0
    results = stack.get(f"/api/v1/inference/jobs/{job['id']}/results")["results"]
    assert [r["name"] for r in results] == [f"{i}.jpg" for i in range(40)]
    assert stack.http.get("/api/v1/inference/jobs/nope/events").status_code == 404


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size).save(buffer, "PNG")
    return buffer.getvalue()


def test_answered_requests_show_in_the_latency_histogram(
    stack: Stack, models: dict[str, dict[str, Any]]
) -> None:
    def count() -> float:
        text = stack.http.get("/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("trainyard_inference_latency_seconds_count"))
        return float(line.split()[-1])

    before = count()
    for _ in range(3):
        assert stack.infer([("a.jpg", jpeg())], model_id=models["detection"]["id"]).status_code == 200
    assert count() == before + 3


def test_a_request_larger_than_a_batch_keeps_order_and_answers(
    stack: Stack, models: dict[str, dict[str, Any]]
) -> None:
    """20 images run as two forward passes (TRAINYARD_INFERENCE_BATCH=16), the second decoding while the
    first predicts: each image gets the boxes it gets on its own, in the order it was sent."""
    colours = [(200, 20, 20), (20, 20, 200), (20, 200, 20), (200, 200, 20)]
    images = [(f"{i}.jpg", jpeg(colour=colours[i % 4])) for i in range(20)]
    form = {"model_id": models["detection"]["id"], "conf": 0.0, "max_det": 3}
    batch = stack.infer(images, **form)
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["name"] for r in results] == [name for name, _ in images]
    for i in (0, 5, 17, 18):
        alone = stack.infer([images[i]], **form).json()["results"][0]["detections"]
        boxes = [d["box"] for d in results[i]["detections"]]
        assert [d["class_id"] for d in results[i]["detections"]] == [d["class_id"] for d in alone]
        for box, single in zip(boxes, [d["box"] for d in alone], strict=True):
            assert max(abs(a - b) for a, b in zip(box, single, strict=True)) < 0.5


def test_the_cli_lists_models_and_predicts(stack: Stack, models: dict[str, dict[str, Any]]) -> None:
    env = {
        **os.environ,
        "TRAINYARD_API_URL": stack.url,
        "TRAINYARD_API_KEY": stack.http.headers["Authorization"].removeprefix("Bearer "),
    }
    listed = subprocess.run(
        [*TRAINYARD, "models", "list", "--project", "vision"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "detector" in listed.stdout and "classifier" in listed.stdout

    image = stack.root / "cli.jpg"
    image.write_bytes(jpeg())
    detector = models["detection"]["id"]
    predicted = subprocess.run(
        [*TRAINYARD, "predict", str(image), "--model", str(detector), "--conf", "0", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert predicted.returncode == 0, predicted.stderr
    answer = json.loads(predicted.stdout)
    assert answer["model_id"] == detector and answer["results"][0]["name"] == "cli.jpg"

    deployed = subprocess.run(
        [*TRAINYARD, "models", "deploy", str(detector)], env=env, capture_output=True, text=True
    )
    assert deployed.returncode == 0, deployed.stderr
    project = models["detection"]["project"]
    by_project = subprocess.run(
        [*TRAINYARD, "predict", str(image), "--project", project, "--task", "detect", "--conf", "0"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert by_project.returncode == 0 and "cli.jpg 64x64" in by_project.stdout, by_project.stdout

    refused = subprocess.run(
        [*TRAINYARD, "predict", str(image), "--model", "424242"], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 6 and "424242" in refused.stderr, refused.stderr  # not found
