"""Manifests frozen before generated images (format /1, paths under the dataset's source folder) and
after (/2, generated images under the dataset's generated folder) both read back for the converter."""

from pathlib import Path

from app.versions.manifest import dataset_from_manifest


def manifest(fmt: str, images: list[dict[str, object]]) -> dict[str, object]:
    return {
        "format": fmt,
        "images": images,
        "tasks": {
            "detection": {
                "file": "annotations_detection.json",
                "classes": [{"id": 0, "name": "cat"}],
                "keypoint_schema": None,
                "images": [
                    {"id": n, "path": i["path"], "width": 8, "height": 8, "annotations": []}
                    for n, i in enumerate(images, 1)
                ],
            }
        },
    }


def test_both_formats_resolve_their_image_files(tmp_path: Path) -> None:
    source = tmp_path / "datasets/d/source"
    old = manifest(
        "trainyard-dataset-version/1",
        [{"path": "images/train/a.png", "sha256": "aa", "split": "train", "file_name": "a.png"}],
    )
    new = manifest(
        "trainyard-dataset-version/2",
        [
            {
                "path": "generated/bb/bb/a_aug1.png",
                "sha256": "bb",
                "split": "train",
                "file_name": "a_aug1.png",
                "lineage": {"source": {"path": "images/train/a.png", "sha256": "aa"}},
            }
        ],
    )
    for data, expected in ((old, "source/images/train/a.png"), (new, "generated/bb/bb/a_aug1.png")):
        dataset = dataset_from_manifest(data, source)
        (image,) = dataset.tasks[next(iter(dataset.tasks))].images
        assert dataset.root / image.path == tmp_path / "datasets/d" / expected
