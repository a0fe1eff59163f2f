"""Our labels against Ultralytics' own COCO converter, and Ultralytics' own label checks on our output."""

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.datasets.convert import convert_to_yolo
from app.datasets.dice import load_dice
from app.datasets.types import TaskType
from tests.datasets.factories import full_dataset, image, task_file, write_dice

CLASSES = [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}, {"id": 2, "name": "bird"}]
Json = dict[str, Any]


@pytest.fixture(scope="module")
def ultralytics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    # Ultralytics reads these at import time; without them it writes to ~ and tries the network.
    saved = {k: os.environ.get(k) for k in ("YOLO_OFFLINE", "YOLO_CONFIG_DIR")}
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("yolo_config"))
    from ultralytics.data import converter

    yield converter
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def random_images(task: str, rng: random.Random) -> list[Json]:
    images, aid = [], 0
    for iid in range(1, 25):
        width, height = rng.choice([(64, 48), (100, 80), (33, 57)])
        anns = []
        for _ in range(rng.randint(0, 5)):
            aid += 1
            x, y = rng.uniform(0, width - 4), rng.uniform(0, height - 4)
            w, h = rng.uniform(1, width - x), rng.uniform(1, height - y)
            ann: Json = {
                "id": aid,
                "class_id": rng.randint(0, 2),
                "bbox": [round(v, 2) for v in (x, y, w, h)],
            }
            if task == "segmentation":
                parts = 1 if rng.random() < 0.6 else rng.randint(2, 3)
                ann["segmentation"] = [polygon(rng, x, y, w, h) for _ in range(parts)]
            ann["iscrowd"] = int(rng.random() < 0.05)
            anns.append(ann)
        split = "val" if iid % 5 == 0 else "train"
        name = f"sub/img{iid}.jpg" if iid % 7 == 0 else f"img{iid}.jpg"
        images.append(image(iid, name, split, anns, width, height))
    return images


def polygon(rng: random.Random, x: float, y: float, w: float, h: float) -> list[float]:
    points = []
    for _ in range(rng.randint(3, 7)):
        points += [round(rng.uniform(x, x + w), 2), round(rng.uniform(y, y + h), 2)]
    return points


def as_coco(images: list[Json], split: str) -> Json:
    """The same labels as COCO JSON: category ids are 1-based there."""
    chosen = [img for img in images if img["split"] == split]
    return {
        "images": [{k: img[k] for k in ("id", "file_name", "width", "height")} for img in chosen],
        "annotations": [
            {
                "id": ann["id"],
                "image_id": img["id"],
                "category_id": ann["class_id"] + 1,
                "bbox": ann["bbox"],
                "area": ann["bbox"][2] * ann["bbox"][3],
                "iscrowd": ann["iscrowd"],
                **({"segmentation": ann["segmentation"]} if "segmentation" in ann else {}),
            }
            for img in chosen
            for ann in img["annotations"]
        ],
        "categories": [{"id": c["id"] + 1, "name": c["name"]} for c in CLASSES],
    }


def rows(path: Path) -> list[list[float]]:
    parsed = [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
    return sorted(parsed, key=lambda r: [round(v, 4) for v in r])


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_labels_equal_ultralytics_coco_converter(task: str, ultralytics: ModuleType, tmp_path: Path) -> None:
    images = random_images(task, random.Random(7))
    root = write_dice(tmp_path / "dice", {f"annotations_{task}.json": task_file(task, images, CLASSES)})
    ours = convert_to_yolo(load_dice(root), TaskType(task), tmp_path / "ours")

    coco_dir = tmp_path / "coco"
    coco_dir.mkdir()
    for split in ("train", "val"):
        (coco_dir / f"instances_{split}.json").write_text(json.dumps(as_coco(images, split)))
    ultralytics.convert_coco(
        str(coco_dir), str(tmp_path / "theirs"), use_segments=task == "segmentation", cls91to80=False
    )
    theirs = tmp_path / "theirs" / "labels"

    compared = 0
    for img in images:
        stem = img["file_name"].rpartition(".")[0]
        our_file, their_file = (
            ours / "labels" / img["split"] / f"{stem}.txt",
            theirs / img["split"] / f"{stem}.txt",
        )
        expected = rows(their_file) if their_file.exists() else []  # it writes no file for unlabelled images
        got = rows(our_file)
        assert [len(r) for r in got] == [len(r) for r in expected], our_file
        if got:
            np.testing.assert_allclose(
                np.concatenate(got), np.concatenate(expected), atol=2e-6, err_msg=str(our_file)
            )
            compared += len(got)
    assert compared > 40  # the comparison really covered labels, crowds skipped, multi-part polygons merged


@pytest.mark.parametrize(("task", "kpt"), [("detection", 0), ("segmentation", 0), ("pose", 3)])
def test_ultralytics_accepts_every_label_file(
    task: str, kpt: int, ultralytics: ModuleType, tmp_path: Path
) -> None:
    from ultralytics.data.utils import verify_image_label

    out = convert_to_yolo(load_dice(full_dataset(tmp_path / "dice")), TaskType(task), tmp_path / "yolo")
    labels = sorted((out / "labels").rglob("*.txt"))
    assert labels
    for label in labels:
        rel = label.relative_to(out / "labels").with_suffix(".jpg")
        result = verify_image_label((str(out / "images" / rel), str(label), "", bool(kpt), 2, kpt, 3, False))
        im_file, _lb, _shape, _segments, _kpts, _nm, _nf, _ne, corrupt, msg = result
        assert (im_file, corrupt, msg) == (str(out / "images" / rel), 0, ""), label
