"""`trainyard demo`: a first model in one command, with no data of one's own.

Through the API only (so it works against any Trainyard, local or not): a small synthetic DICE
dataset (red and blue rectangles on grey) is uploaded to a `demo` project and lands in the storage
root, a version is frozen, a detector trains on it while `jobs watch` shows it, the model is
registered and validated by a worker, and it predicts on one image, next to what the image holds.

With no pretrained weights (offline), the detector starts from random weights. What makes it learn in
a minute or two of CPU: one optimizer step per batch (`nbs` = batch: with Ultralytics' default of 64,
30 epochs of 32 images in batches of 8 make 15 steps instead of 120), AdamW at a fixed lr0 whose
schedule ends at a tenth of it (not a hundredth), and whole shapes at least a quarter of the image
wide. Measured on 2 CPU cores (Ultralytics alone, same data and settings): mAP50 0.995 after 30 epochs
in ~70 s, its boxes scored 0.2-0.5 and nothing else above 0.05; with nbs 64, mAP50 0.
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
# Named anew whenever the pictures change, so that an install which ran an older demo trains on these.
DATASET = "shapes-2"
# The classes: a name and the colour its shapes are drawn in.
PALETTE: list[tuple[str, tuple[int, int, int]]] = [("red", (220, 30, 30)), ("blue", (30, 60, 220))]
# What learns from random weights in a minute or two of CPU (the docstring above says why).
TRAINING: dict[str, Any] = {
    **{"imgsz": 96, "batch": 8, "nbs": 8, "optimizer": "AdamW", "lr0": 0.004, "lrf": 0.1},
    **{"workers": 0, "plots": False},  # no dataloader processes, no plots: less time, same model
}


def _picture(
    rng: random.Random, size: int, colours: list[tuple[int, int, int]]
) -> tuple[bytes, list[dict[str, Any]]]:
    image = Image.new("RGB", (size, size), (rng.randint(60, 140),) * 3)
    draw = ImageDraw.Draw(image)
    boxes: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 3)):
        cls = rng.randrange(len(colours))
        w, h = rng.randint(size // 4, size // 2), rng.randint(size // 4, size // 2)
        x, y = rng.randint(0, size - w), rng.randint(0, size - h)
        if any(_overlap((x, y, w, h), box["bbox"]) for box in boxes):
            continue  # every shape whole: what it is and where it ends is plain to see
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=colours[cls])
        boxes.append({"class_id": cls, "bbox": [x, y, w, h]})
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue(), boxes


Sample = tuple[bytes, list[dict[str, Any]]]  # an image and its boxes (class_id, bbox [x, y, w, h])


def _overlap(a: tuple[int, int, int, int] | list[int], b: tuple[int, int, int, int] | list[int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def shapes_zip(
    train: int = 32,
    val: int = 8,
    size: int = 96,
    seed: int = 0,
    palette: list[tuple[str, tuple[int, int, int]]] = PALETTE,
) -> tuple[bytes, Sample]:
    """A DICE detection dataset as a ZIP (docs/datasets.md), and one of its val images."""
    colours = [colour for _, colour in palette]
    classes = [{"id": i, "name": name} for i, (name, _) in enumerate(palette)]
    rng = random.Random(seed)
    images: list[dict[str, Any]] = []
    buffer = io.BytesIO()
    sample: Sample = (b"", [])
    next_annotation = 1
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(train + val):
            split = "train" if index < train else "val"
            data, boxes = _picture(rng, size, colours)
            archive.writestr(f"images/{split}/{index}.jpg", data)
            sample = (data, boxes)
            annotations = []
            for box in boxes:
                annotations.append({"id": next_annotation, **box})
                next_annotation += 1
            images.append(
                {"id": index + 1, "file_name": f"{index}.jpg", "width": size, "height": size, "split": split,
                 "annotations": annotations}
            )  # fmt: skip
        document = {"task_type": "object_detection", "classes": classes, "images": images}
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
        "config": {"epochs": epochs, **TRAINING},
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


def same_shape(shape: dict[str, Any], detection: dict[str, Any]) -> bool:
    """The detection is this shape: its class, and boxes overlapping by IoU >= 0.5 (mAP50's rule)."""
    x, y, w, h = shape["bbox"]
    a = (x, y, x + w, y + h)
    b = detection["box"]
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(inter_w, 0) * max(inter_h, 0)
    union = w * h + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return detection["class_id"] == shape["class_id"] and inter >= 0.5 * union


def predict(api: ApiClient, model_id: int) -> int:
    model = wait_ready(api, model_id)
    if model["status"] != "ready":
        console.print(f"[red]model {model_id} is {model['status']}: {model.get('status_reason')}[/red]")
        return ExitCode.FAILED
    _archive, (image, truth) = shapes_zip()
    # A model trained for a minute scores its boxes low (0.2-0.5) but puts nothing else above 0.05.
    answer = api.infer([("sample.jpg", image)], model_id=model_id, conf=0.1)
    found = answer["results"][0].get("detections") or []
    console.print(f"model {model_id} found {len(found)} shape(s) in a validation image:")
    for item in found[:5]:
        box = " ".join(f"{v:.0f}" for v in item.get("box", []))
        console.print(f"  {item['class_name']} {item['confidence']:.2f} at {box}")
    hits = sum(any(same_shape(shape, item) for item in found) for shape in truth)
    console.print(f"the image holds {len(truth)} shape(s); the model found {hits} of them:")
    for shape in truth:
        x, y, w, h = shape["bbox"]
        console.print(f"  {PALETTE[shape['class_id']][0]} at {x} {y} {x + w} {y + h}")
    console.print(
        f"\nnext: trainyard predict --model {model_id} IMAGE.jpg    "
        f"trainyard models deploy {model_id}    trainyard jobs list --project {PROJECT}"
    )
    return ExitCode.OK
