"""Small typed factories: rows for the database and tiny datasets on disk."""

import io
import json
import random
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from sqlalchemy.orm import Session

from app.core.events import EventType, record_event
from app.core.jobs import JobStatus
from app.core.naming import slugify
from app.models import ModelStatus, Project, RegisteredModel, TrainingJob


def make_job(session: Session, name: str = "run", project: str = "demo", **fields: Any) -> TrainingJob:
    """A queued job with its first event, as the API creates it (without sending a command)."""
    owner = session.query(Project).filter_by(name=project).one_or_none()
    owner = owner or Project(name=project, slug=slugify(project))
    defaults: dict[str, Any] = {
        "framework": "ultralytics",
        "task_type": "detection",
        "model_name": "yolo11n",
        "dataset_path": "/nowhere",
        "config": {"epochs": 2},
        "attempt": 1,
        "total_epochs": 2,
    }
    job = TrainingJob(
        project=owner,
        name=name,
        slug=slugify(name),
        status=JobStatus.QUEUED,
        last_event_seq=0,
        **(defaults | fields),
    )
    session.add(job)
    session.flush()
    record_event(session, job, EventType.STATUS, {"status": JobStatus.QUEUED, "attempt": job.attempt})
    return job


def make_yolo_dataset(root: Path, train: int = 16, val: int = 4, size: int = 128, seed: int = 0) -> Path:
    """Coloured rectangles on a grey field, two classes, with YOLO labels and a data.yaml."""
    rng = random.Random(seed)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = Image.new("RGB", (size, size), (rng.randint(0, 80),) * 3)
            draw = ImageDraw.Draw(image)
            lines = []
            for _ in range(rng.randint(1, 3)):
                cls = rng.randint(0, 1)
                w, h = rng.randint(size // 6, size // 2), rng.randint(size // 6, size // 2)
                x, y = rng.randint(0, size - w), rng.randint(0, size - h)
                draw.rectangle([x, y, x + w, y + h], fill=(255, 0, 0) if cls == 0 else (0, 0, 255))
                lines.append(
                    f"{cls} {(x + w / 2) / size:.6f} {(y + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}"
                )
            image.save(root / "images" / split / f"{i}.jpg")
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    # `path: .`, the common convention: relative to the data.yaml's folder, not the worker's cwd.
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: red\n  1: blue\n"
    )
    return root


def register_untrained_model(
    session: Session, storage: Path, weights: Path, project: str, name: str, imgsz: int
) -> int:
    """A `ready` detection model whose weights are an untrained YOLO checkpoint (`YOLO(yaml).save`):
    what a forward pass costs does not depend on what the weights learned."""
    key = f"projects/{slugify(project)}/model/registry/{slugify(name)}/best.pt"
    (storage / key).parent.mkdir(parents=True, exist_ok=True)
    (storage / key).write_bytes(weights.read_bytes())
    owner = session.query(Project).filter_by(name=project).one_or_none() or Project(
        name=project, slug=slugify(project)
    )
    model = RegisteredModel(
        project=owner,
        name=name,
        framework="ultralytics",
        task_type="detection",
        architecture="yolo11n",
        weights_key=key,
        size_bytes=weights.stat().st_size,
        imgsz=imgsz,
        class_names=[f"class{i}" for i in range(80)],
        metrics={},
        config={},
        package_versions={},
        job_status="completed",
        status=ModelStatus.READY,
    )
    session.add(model)
    session.flush()
    return model.id


def dice_zip(train: int = 12, val: int = 4, size: int = 64, folder: str = "") -> bytes:
    """Red and blue rectangles on grey, as a DICE detection dataset in a ZIP; `folder` ("cam0/") puts the
    images in a folder of each split, which their file names then include."""
    rng = random.Random(3)
    images, buffer, aid = [], io.BytesIO(), 0
    with zipfile.ZipFile(buffer, "w") as archive:
        for iid in range(1, train + val + 1):
            split = "train" if iid <= train else "val"
            picture = Image.new("RGB", (size, size), (rng.randint(0, 80),) * 3)
            draw, anns = ImageDraw.Draw(picture), []
            for _ in range(rng.randint(1, 2)):
                cls = rng.randint(0, 1)
                w, h = rng.randint(12, 30), rng.randint(12, 30)
                x, y = rng.randint(0, size - w), rng.randint(0, size - h)
                draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(255, 0, 0) if cls == 0 else (0, 0, 255))
                aid += 1
                anns.append({"id": aid, "image_id": iid, "class_id": cls, "bbox": [x, y, w, h]})
            data = io.BytesIO()
            picture.save(data, "PNG")
            archive.writestr(f"images/{split}/{folder}{iid}.png", data.getvalue())
            images.append(
                {
                    "id": iid,
                    "file_name": f"{folder}{iid}.png",
                    "width": size,
                    "height": size,
                    "split": split,
                    "annotations": anns,
                }
            )
        classes = [{"id": 0, "name": "red"}, {"id": 1, "name": "blue"}]
        body = {"task_type": "object_detection", "classes": classes, "images": images}
        archive.writestr("annotations_detection.json", json.dumps(body))
    return buffer.getvalue()
