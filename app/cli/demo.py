"""`trainyard demo`: a first model in one command, with no data of one's own.

Through the API only (so it works against any Trainyard, local or not): a small synthetic DICE
dataset (red and blue rectangles on grey) is uploaded to a `demo` project and lands in the storage
root, a version is frozen, a detector trains on it while `jobs watch` shows it, the model is
registered and validated by a worker, and it predicts on one image.
"""

import io
import json
import random
import time
import zipfile
from datetime import UTC, datetime
from typing import Any

from PIL import Image, ImageDraw

from app.cli.client import ApiClient
from app.cli.common import ExitCode, console

PROJECT = "demo"
DATASET = "shapes"
CLASSES = [{"id": 0, "name": "red"}, {"id": 1, "name": "blue"}]
COLOURS = [(220, 30, 30), (30, 60, 220)]


def _picture(rng: random.Random, size: int) -> tuple[bytes, list[dict[str, Any]]]:
    image = Image.new("RGB", (size, size), (rng.randint(60, 140),) * 3)
    draw = ImageDraw.Draw(image)
    boxes = []
    for _ in range(rng.randint(1, 3)):
        cls = rng.randint(0, 1)
        w, h = rng.randint(size // 5, size // 2), rng.randint(size // 5, size // 2)
        x, y = rng.randint(0, size - w), rng.randint(0, size - h)
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=COLOURS[cls])
        boxes.append({"class_id": cls, "bbox": [x, y, w, h]})
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue(), boxes


def shapes_zip(train: int = 32, val: int = 8, size: int = 96, seed: int = 0) -> tuple[bytes, bytes]:
    """A DICE detection dataset as a ZIP (docs/datasets.md), and one of its val images."""
    rng = random.Random(seed)
    images: list[dict[str, Any]] = []
    buffer = io.BytesIO()
    sample = b""
    next_annotation = 1
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(train + val):
            split = "train" if index < train else "val"
            data, boxes = _picture(rng, size)
            archive.writestr(f"images/{split}/{index}.jpg", data)
            sample = data
            annotations = []
            for box in boxes:
                annotations.append({"id": next_annotation, **box})
                next_annotation += 1
            images.append(
                {"id": index + 1, "file_name": f"{index}.jpg", "width": size, "height": size, "split": split,
                 "annotations": annotations}
            )  # fmt: skip
        document = {"task_type": "object_detection", "classes": CLASSES, "images": images}
        archive.writestr("annotations_detection.json", json.dumps(document))
        archive.writestr(
            "metadata.json", json.dumps({"name": DATASET, "description": "made by trainyard demo"})
        )
    return buffer.getvalue(), sample


def project_id(api: ApiClient) -> int:
    try:
        return api.project_id(PROJECT)
    except LookupError:
        return int(
            api.post("/api/v1/projects", {"name": PROJECT, "description": "made by trainyard demo"})["id"]
        )


def dataset_id(api: ApiClient, project: int, archive: bytes) -> int:
    """The demo dataset, uploaded on the first run and reused after."""
    page = api.get("/api/v1/datasets", project_id=project, search=DATASET, limit=500)
    for dataset in page["datasets"]:
        if dataset["name"] == DATASET:
            return int(dataset["id"])
    console.print(f"uploading a synthetic dataset ({len(archive) // 1024} KB) to project {PROJECT!r}")
    files = {"file": ("shapes.zip", archive, "application/zip")}
    dataset = api.request(
        "POST", "/api/v1/datasets", data={"project_id": str(project), "name": DATASET}, files=files
    )
    console.print(f"dataset {dataset['id']}: {dataset['total_images']} images in {dataset['storage_path']}")
    return int(dataset["id"])


def submit(api: ApiClient, epochs: int) -> dict[str, Any]:
    project = project_id(api)
    archive, _sample = shapes_zip()
    dataset = dataset_id(api, project, archive)
    version = api.post(f"/api/v1/projects/{project}/versions", {"idempotency_key": f"demo-{dataset}"})
    name = f"shapes {datetime.now(UTC):%Y%m%d-%H%M%S}"
    body = {
        "name": name,
        "project": PROJECT,
        "task_type": "detection",
        "model_name": "yolo11n",
        "dataset_version_id": version["id"],
        "config": {"epochs": epochs, "imgsz": 96, "batch": 8, "workers": 0, "plots": False},
    }
    job: dict[str, Any] = api.submit(body)
    console.print(f"job {job['id']} {name!r} trains a detector on version {version['id']} ({epochs} epochs)")
    return job


def wait_ready(api: ApiClient, model_id: int, timeout: float = 300.0) -> dict[str, Any]:
    """A worker loads and runs a new model before it may serve; wait for that."""
    deadline = time.monotonic() + timeout
    while True:
        model = api.get_model(model_id)
        if model["status"] != "pending" or time.monotonic() > deadline:
            return model
        time.sleep(1.0)


def predict(api: ApiClient, model_id: int) -> int:
    model = wait_ready(api, model_id)
    if model["status"] != "ready":
        console.print(f"[red]model {model_id} is {model['status']}: {model.get('status_reason')}[/red]")
        return ExitCode.FAILED
    _archive, sample = shapes_zip()
    answer = api.infer([("sample.jpg", sample)], model_id=model_id, conf=0.1)
    found = answer["results"][0].get("detections") or []
    console.print(f"model {model_id} found {len(found)} shape(s) in a validation image:")
    for item in found[:5]:
        box = " ".join(f"{v:.0f}" for v in item.get("box", []))
        console.print(f"  {item['class_name']} {item['confidence']:.2f} at {box}")
    console.print(
        f"\nnext: trainyard predict --model {model_id} IMAGE.jpg    "
        f"trainyard models deploy {model_id}    trainyard jobs list --project {PROJECT}"
    )
    return ExitCode.OK
