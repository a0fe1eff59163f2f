"""Small synthetic DICE datasets, written as real files (PIL images, JSON) the way the labeler writes them."""

import json
from pathlib import Path
from typing import Any

from PIL import Image

W, H = 64, 48
# Listed out of id order on purpose: YOLO indexes must follow the ids, not the list order.
CLASSES = [{"id": 1, "name": "dog", "color": "#00ff00"}, {"id": 0, "name": "cat", "color": "#ff0000"}]
KEYPOINT_SCHEMA = {"names": ["nose", "left_eye", "right_eye"], "skeleton": [[0, 1], [0, 2]]}

Json = dict[str, Any]


def image(iid: int, name: str, split: str, annotations: list[Json], width: int = W, height: int = H) -> Json:
    return {
        "id": iid,
        "file_name": name,
        "width": width,
        "height": height,
        "depth": 3,
        "split": split,
        "annotations": annotations,
    }


def det(aid: int, iid: int, class_id: int, bbox: list[float], **extra: Any) -> Json:
    return {"id": aid, "image_id": iid, "class_id": class_id, "bbox": bbox, "bbox_format": "xywh", **extra}


def seg(aid: int, iid: int, class_id: int, polygons: list[list[float]], **extra: Any) -> Json:
    return {"id": aid, "image_id": iid, "class_id": class_id, "segmentation": polygons, **extra}


def pose(aid: int, iid: int, class_id: int, bbox: list[float], keypoints: list[float]) -> Json:
    return {"id": aid, "image_id": iid, "class_id": class_id, "bbox": bbox, "keypoints": keypoints}


def cls(aid: int, iid: int, class_id: int) -> Json:
    return {"id": aid, "image_id": iid, "class_id": class_id, "attributes": {}}


def task_file(task_type: str, images: list[Json], classes: list[Json] | None = None, **extra: Any) -> Json:
    return {
        "format_version": "1.0",
        "dataset_name": "synthetic",
        "task_type": task_type,
        "classes": CLASSES if classes is None else classes,
        "images": images,
        **extra,
    }


def write_dice(root: Path, files: dict[str, Json], *, make_images: bool = True) -> Path:
    """Write the annotation files and a real image for every image they list."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.json").write_text(json.dumps({"name": "synthetic", "description": "made by a test"}))
    for file_name, data in files.items():
        (root / file_name).write_text(json.dumps(data))
        if not make_images:
            continue
        for img in data.get("images", []):
            if ".." in str(img["file_name"]) or min(img["width"], img["height"]) <= 0:
                continue  # a deliberately broken entry; nothing sensible to draw
            path = root / "images" / str(img["split"]) / str(img["file_name"])
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (img["width"], img["height"]), (img["id"] * 40 % 255, 90, 160)).save(path)
    return root


def detection_images() -> list[Json]:
    return [
        image(1, "a.jpg", "train", [det(10, 1, 0, [8, 12, 16, 24]), det(11, 1, 1, [30, 0, 34, 48])]),
        image(2, "b.jpg", "train", [det(12, 2, 1, [0, 0, 64, 48])]),
        image(3, "sub/c.jpg", "train", []),
        image(4, "d.jpg", "val", [det(13, 4, 0, [10.5, 10.25, 20, 20.5])]),
        image(5, "e.jpg", "test", [det(14, 5, 1, [1, 2, 3, 4])]),
    ]


def segmentation_images() -> list[Json]:
    return [
        image(1, "a.jpg", "train", [seg(20, 1, 0, [[8, 12, 24, 12, 24, 36, 8, 36]], bbox=[8, 12, 16, 24])]),
        # One object in two parts, as COCO writes occluded objects.
        image(
            2,
            "b.jpg",
            "train",
            [seg(21, 2, 1, [[2, 2, 10, 2, 10, 10, 2, 10], [30, 30, 40, 30, 35, 44]], bbox=[2, 2, 38, 42])],
        ),
        image(4, "d.jpg", "val", [seg(22, 4, 1, [[1, 1, 60, 1, 30, 40]], bbox=[1, 1, 59, 39])]),
    ]


def pose_images() -> list[Json]:
    return [
        image(1, "a.jpg", "train", [pose(30, 1, 0, [8, 8, 32, 32], [16, 16, 2, 12, 12, 2, 20, 12, 1])]),
        image(2, "b.jpg", "train", [pose(31, 2, 1, [0, 0, 64, 48], [32, 24, 2, 0, 0, 0, 40, 20, 2])]),
        image(4, "d.jpg", "val", [pose(32, 4, 0, [4, 4, 40, 40], [20, 20, 2, 16, 16, 2, 24, 16, 2])]),
    ]


def classification_images() -> list[Json]:
    return [
        image(1, "a.jpg", "train", [cls(40, 1, 0)]),
        image(2, "b.jpg", "train", [cls(41, 2, 1)]),
        image(3, "sub/c.jpg", "train", [cls(42, 3, 1)]),
        image(4, "d.jpg", "val", [cls(43, 4, 0)]),
        image(5, "e.jpg", "test", []),
    ]


def full_dataset(root: Path) -> Path:
    """A valid dataset with all four task files over the same images."""
    return write_dice(
        root,
        {
            "annotations_classification.json": task_file("classification", classification_images()),
            "annotations_detection.json": task_file("object_detection", detection_images()),
            "annotations_segmentation.json": task_file("segmentation", segmentation_images()),
            "annotations_pose.json": task_file("pose", pose_images(), keypoint_schema=KEYPOINT_SCHEMA),
        },
    )
