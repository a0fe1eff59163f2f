"""Loading DICE folders: what a user sees for a good dataset and for each kind of mistake."""

import json
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import AppError
from app.datasets.dice import load_dice, summarize
from app.datasets.types import TaskType
from tests.datasets.factories import (
    KEYPOINT_SCHEMA,
    det,
    detection_images,
    full_dataset,
    image,
    pose,
    seg,
    task_file,
    write_dice,
)

DET = "annotations_detection.json"


def rejection(root: Path) -> AppError:
    with pytest.raises(AppError) as caught:
        load_dice(root)
    assert caught.value.status == 422
    return caught.value


def problems(root: Path) -> dict[str, str]:
    errors = rejection(root).errors
    found = {e.field: e.reason for e in errors}
    assert len(found) == len(errors), "one problem per field in these tests"
    return found


def detection_dataset(root: Path, images: list[dict[str, Any]], **extra: Any) -> Path:
    return write_dice(root, {DET: task_file("object_detection", images, **extra)})


def test_loads_every_task_with_its_classes_images_and_annotations(tmp_path: Path) -> None:
    dataset = load_dice(full_dataset(tmp_path))

    assert set(dataset.tasks) == set(TaskType)
    detection = dataset.task(TaskType.DETECTION)
    assert [(c.id, c.name) for c in detection.classes] == [(0, "cat"), (1, "dog")]
    first = detection.images[0]
    assert (first.id, first.file_name, first.width, first.height, first.split) == (
        1,
        "a.jpg",
        64,
        48,
        "train",
    )
    assert first.path == "images/train/a.jpg"
    assert [a.bbox for a in first.annotations] == [(8, 12, 16, 24), (30, 0, 34, 48)]
    assert dataset.task(TaskType.SEGMENTATION).images[1].annotations[0].polygons[1] == (
        30,
        30,
        40,
        30,
        35,
        44,
    )
    schema = dataset.task(TaskType.POSE).keypoints
    assert schema is not None
    assert schema.names == ("nose", "left_eye", "right_eye")
    assert schema.skeleton == ((0, 1), (0, 2))
    assert schema.flip_idx == (0, 2, 1)  # derived from the left_/right_ names
    assert dataset.metadata["name"] == "synthetic"


def test_summary_has_the_dataset_api_shape(tmp_path: Path) -> None:
    summary = summarize(load_dice(full_dataset(tmp_path)))

    assert summary == {
        "task_types": ["classification", "detection", "segmentation", "pose"],
        "total_images": 5,
        "splits": {"train": 3, "val": 1, "test": 1},
        "annotations": {
            "classification": {
                "file": "annotations_classification.json",
                "classes": ["cat", "dog"],
                "total_annotations": 4,
            },
            "detection": {"file": DET, "classes": ["cat", "dog"], "total_annotations": 5},
            "segmentation": {
                "file": "annotations_segmentation.json",
                "classes": ["cat", "dog"],
                "total_annotations": 3,
            },
            "pose": {"file": "annotations_pose.json", "classes": ["cat", "dog"], "total_annotations": 3},
        },
    }


def test_a_coco_style_top_level_annotation_list_is_accepted(tmp_path: Path) -> None:
    images = [image(1, "a.jpg", "train", []), image(2, "b.jpg", "val", [])]
    flat = [det(5, 2, 0, [1, 1, 5, 5]), det(6, 1, 1, [2, 2, 5, 5])]
    dataset = load_dice(detection_dataset(tmp_path, images, annotations=flat))

    assert [[a.id for a in i.annotations] for i in dataset.task(TaskType.DETECTION).images] == [[6], [5]]


def test_bbox_outside_the_image_names_the_annotation(tmp_path: Path) -> None:
    images = [image(1, "a.jpg", "train", [])]
    flat = [det(100 + k, 1, 0, [1, 1, 5, 5]) for k in range(12)] + [det(112, 1, 0, [600, 10, 100, 50])]
    found = problems(detection_dataset(tmp_path, images, annotations=flat))

    assert found == {
        f"{DET}:annotations[12].bbox": "bbox [x,y,w,h] [600, 10, 100, 50] outside the 64x48 image"
    }


def test_nested_annotation_errors_point_into_the_image(tmp_path: Path) -> None:
    images = [image(1, "a.jpg", "train", [det(1, 1, 0, [1, 1, 5, 5]), det(2, 1, 7, [1, 1, 5, 5])])]

    assert problems(detection_dataset(tmp_path, images)) == {
        f"{DET}:images[0].annotations[1].class_id": "unknown class_id 7"
    }


def test_missing_image_file(tmp_path: Path) -> None:
    root = detection_dataset(tmp_path, detection_images())
    (root / "images/train/b.jpg").unlink()

    assert problems(root) == {f"{DET}:images[1].file_name": "missing file images/train/b.jpg"}


def test_duplicate_image_id(tmp_path: Path) -> None:
    images = [image(3, "a.jpg", "train", []), image(3, "b.jpg", "train", [])]

    assert problems(detection_dataset(tmp_path, images)) == {f"{DET}:images[1].id": "duplicate image id 3"}


def test_bad_split_name(tmp_path: Path) -> None:
    root = detection_dataset(tmp_path, [image(1, "a.jpg", "train", [])])
    data = json.loads((root / DET).read_text())
    data["images"][0]["split"] = "trian"
    (root / DET).write_text(json.dumps(data))

    assert problems(root) == {f"{DET}:images[0].split": "bad split name 'trian' (train|val|test)"}


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    images = [
        image(1, "a.jpg", "train", [det(1, 1, 0, [1, 1, 0, 5]), det(1, 1, 0, [1, 1, 5, 5])]),
        image(2, "b.jpg", "train", [det(2, 2, 0, [1, 1, 5], bbox_format="xywh")]),
        image(3, "../../etc/passwd.jpg", "train", []),
        image(4, "d.jpg", "train", [], width=0),
    ]
    root = detection_dataset(tmp_path, images)
    (root / "annotations_pose.json").write_text("{not json")

    assert problems(root) == {
        "annotations_pose.json": (
            "not valid JSON: line 1 column 2: Expecting property name enclosed in double quotes"
        ),
        f"{DET}:images[0].annotations[0].bbox": "bbox [1, 1, 0, 5] has no area (w and h must be > 0)",
        f"{DET}:images[0].annotations[1].id": "duplicate annotation id 1",
        f"{DET}:images[1].annotations[0].bbox": "must be [x, y, w, h] in pixels, got [1, 1, 5]",
        f"{DET}:images[2].file_name": (
            "must be a relative path inside images/<split>/, got '../../etc/passwd.jpg'"
        ),
        f"{DET}:images[3].width": "width and height must be positive integers, got 0x48",
    }


def test_task_specific_geometry_is_checked(tmp_path: Path) -> None:
    files = {
        "annotations_segmentation.json": task_file(
            "segmentation",
            [
                image(
                    1,
                    "a.jpg",
                    "train",
                    [seg(1, 1, 0, [[0, 0, 100, 0, 50, 40]]), seg(2, 1, 0, [[0, 0, 5, 5]])],
                )
            ],
        ),
        "annotations_pose.json": task_file(
            "pose",
            [image(1, "a.jpg", "train", [pose(1, 1, 0, [0, 0, 10, 10], [1, 1, 2, 70, 5, 2, 0, 0, 0])])],
            keypoint_schema=KEYPOINT_SCHEMA,
        ),
    }

    assert problems(write_dice(tmp_path, files)) == {
        "annotations_segmentation.json:images[0].annotations[0].segmentation[0]": (
            "polygon outside the 64x48 image"
        ),
        "annotations_segmentation.json:images[0].annotations[1].segmentation[0]": (
            "a polygon needs at least 3 points as x1, y1, x2, y2, ... numbers"
        ),
        "annotations_pose.json:images[0].annotations[0].keypoints": (
            "keypoint 1 (left_eye) at (70, 5) outside the 64x48 image"
        ),
    }


def test_the_files_task_type_and_class_table_are_checked(tmp_path: Path) -> None:
    classes = [{"id": 0, "name": "cat"}, {"id": 0, "name": "dog"}, {"id": 2, "name": "a/b"}]
    root = write_dice(tmp_path, {DET: task_file("classification", [], classes=classes)})
    (root / "images").mkdir()

    assert problems(root) == {
        f"{DET}:task_type": "'classification' does not match the file name (detection)",
        f"{DET}:classes[1].id": "duplicate class id 0",
        f"{DET}:classes[2].name": "'a/b' cannot be a folder name (no '/', '\\', '..')",
    }


def test_a_flood_of_errors_is_capped(tmp_path: Path) -> None:
    images = [image(k, f"{k}.jpg", "train", [det(k, k, 9, [1, 1, 2, 2])]) for k in range(1, 251)]
    errors = rejection(detection_dataset(tmp_path, images)).errors

    assert len(errors) == 101
    assert (errors[-1].field, errors[-1].reason) == ("dataset", "150 more problems not listed")


def test_a_folder_without_annotation_files_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()

    assert list(problems(tmp_path)) == ["dataset"]


def test_asking_for_a_task_the_dataset_lacks_is_a_422(tmp_path: Path) -> None:
    dataset = load_dice(detection_dataset(tmp_path, detection_images()))

    with pytest.raises(AppError) as caught:
        dataset.task(TaskType.POSE)
    assert (caught.value.status, caught.value.errors[0].reason) == (
        422,
        "the dataset has no annotations_pose.json",
    )


SEED_DETECTION_SAMPLE = """
{
  "format_version": "1.0",
  "dataset_id": "8f97389d-aa20-4de3-9872-d3cf8909a53c",
  "dataset_name": "det-mvtec-ad",
  "task_type": "object_detection",
  "created_at": "2025-11-18T22:04:10.784593+09:00",
  "last_modified_at": "2025-11-20T07:53:59.911606+09:00",
  "version": 1,
  "classes": [{"id": 0, "name": "defect", "color": "#d96826", "supercategory": "object"}],
  "images": [
    {
      "id": 1, "file_name": "bottle/broken_large/000.png", "width": 900, "height": 900, "depth": 3,
      "split": "train",
      "annotations": [
        {
          "id": 1685, "image_id": 1, "class_id": 0, "class_name": "defect",
          "bbox": [351.29, 286.94, 430.0, 512.22], "bbox_format": "xywh", "area": 220255.55,
          "iscrowd": 0, "attributes": {}
        }
      ],
      "metadata": {"labeled_by": "admin@example.com", "source": "platform_labeler_v1.0"}
    }
  ],
  "statistics": {"total_images": 63, "total_annotations": 85, "split_distribution": {"train": 63}}
}
"""


def test_the_design_documents_detection_sample_loads(tmp_path: Path) -> None:
    (tmp_path / DET).write_text(SEED_DETECTION_SAMPLE)
    (tmp_path / "images/train/bottle/broken_large").mkdir(parents=True)
    (tmp_path / "images/train/bottle/broken_large/000.png").write_bytes(b"")

    summary = summarize(load_dice(tmp_path))

    assert summary["annotations"] == {
        "detection": {"file": DET, "classes": ["defect"], "total_annotations": 1}
    }
    assert (summary["total_images"], summary["splits"]) == (1, {"train": 1, "val": 0, "test": 0})


def test_file_names_that_include_the_split_are_summarised_with_their_cause(tmp_path: Path) -> None:
    images = [
        image(k, f"{k}.jpg", "train" if k <= 60 else "val", [det(k, k, 0, [1, 1, 5, 5])])
        for k in range(1, 81)
    ]
    root = detection_dataset(tmp_path, images)
    for entry in images:  # what an exporter that writes "train/1.jpg" produces
        entry["file_name"] = f"{entry['split']}/{entry['file_name']}"
    (root / DET).write_text(json.dumps(task_file("object_detection", images)))

    error = rejection(root)
    assert error.detail.startswith("80 problems in the dataset; likely cause: file_name includes the split")
    assert "write '1.jpg'" in error.detail and len(error.detail) < 800
    assert error.detail.count("missing file") == 5
    assert error.errors[0].field == "dataset" and "likely cause" in error.errors[0].reason
    assert len(error.errors) == 81


def test_images_outside_their_split_folder_are_explained(tmp_path: Path) -> None:
    root = detection_dataset(tmp_path, detection_images())
    for picture in (root / "images" / "train").iterdir():
        picture.rename(root / "images" / picture.name)

    error = rejection(root)
    assert "likely cause: the images are not where file_name and split point" in error.detail
    assert "is at images/a.jpg" in error.detail


def test_a_few_unrelated_problems_are_listed_in_full(tmp_path: Path) -> None:
    root = detection_dataset(tmp_path, detection_images())
    (root / "images/train/b.jpg").unlink()

    assert rejection(root).detail == f"{DET}:images[1].file_name: missing file images/train/b.jpg"


def test_the_documented_example_loads(tmp_path: Path) -> None:
    from PIL import Image

    doc = (Path(__file__).parents[2] / "docs" / "datasets.md").read_text()
    example = json.loads(doc.split("```json\n", 1)[1].split("```", 1)[0])
    for entry in example["images"]:
        picture = tmp_path / "images" / entry["split"] / entry["file_name"]
        picture.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (entry["width"], entry["height"])).save(picture)
    (tmp_path / DET).write_text(json.dumps(example))

    summary = summarize(load_dice(tmp_path))
    assert summary["splits"] == {"train": 1, "val": 1, "test": 0}
    assert summary["annotations"]["detection"]["total_annotations"] == 3
