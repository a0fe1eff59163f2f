"""DICE -> YOLO: the files a trainer reads, their determinism, atomicity and the cache."""

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from app.core.errors import AppError
from app.datasets.convert import MARKER_FILE, convert_cached, convert_to_yolo
from app.datasets.dice import load_dice
from app.datasets.types import DiceDataset, TaskType
from tests.datasets.factories import detection_images, full_dataset, image, task_file, write_dice


@pytest.fixture
def dataset(tmp_path: Path) -> DiceDataset:
    return load_dice(full_dataset(tmp_path / "dice"))


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_detection_labels_are_normalized_centre_boxes(dataset: DiceDataset, tmp_path: Path) -> None:
    out = convert_to_yolo(dataset, TaskType.DETECTION, tmp_path / "yolo")

    # a.jpg is 64x48: [8, 12, 16, 24] -> centre (16, 24) -> (0.25, 0.5), size (0.25, 0.5); dog is id 1.
    assert (out / "labels/train/a.txt").read_text() == (
        "0 0.250000 0.500000 0.250000 0.500000\n1 0.734375 0.500000 0.531250 1.000000\n"
    )
    assert (out / "labels/train/sub/c.txt").read_text() == ""  # a background image
    assert (out / "labels/val/d.txt").read_text() == "0 0.320312 0.427083 0.312500 0.427083\n"
    assert sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.jpg")) == [
        "images/test/e.jpg",
        "images/train/a.jpg",
        "images/train/b.jpg",
        "images/train/sub/c.jpg",
        "images/val/d.jpg",
    ]


def test_data_yaml_lists_names_in_id_order_and_the_splits(dataset: DiceDataset, tmp_path: Path) -> None:
    out = convert_to_yolo(dataset, TaskType.DETECTION, tmp_path / "yolo")
    data = yaml.safe_load((out / "data.yaml").read_text())

    assert data == {
        "path": str(out.resolve()),
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "nc": 2,
        "names": {0: "cat", 1: "dog"},
        "dice_class_ids": {0: 0, 1: 1},
    }


def test_images_are_hard_links_not_copies(dataset: DiceDataset, tmp_path: Path) -> None:
    out = convert_to_yolo(dataset, TaskType.DETECTION, tmp_path / "yolo")

    source = os.stat(dataset.root / "images/train/a.jpg")
    linked = os.stat(out / "images/train/a.jpg")
    assert (linked.st_ino, linked.st_dev) == (source.st_ino, source.st_dev)
    assert json.loads((out / MARKER_FILE).read_text())["link_mode"] == "hardlink"


def test_across_filesystems_images_are_symlinked(tmp_path: Path) -> None:
    if not Path("/dev/shm").is_dir():
        pytest.skip("no second filesystem (/dev/shm) to link across")
    other = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same filesystem")
        root = full_dataset(other / "dice")
        out = convert_to_yolo(load_dice(root), TaskType.DETECTION, tmp_path / "yolo")

        assert (out / "images/train/a.jpg").is_symlink()
        assert (out / "images/train/a.jpg").resolve() == (root / "images/train/a.jpg").resolve()
        assert json.loads((out / MARKER_FILE).read_text())["link_mode"] == "symlink"
    finally:
        shutil.rmtree(other)


def test_segmentation_labels_are_normalized_polygons(dataset: DiceDataset, tmp_path: Path) -> None:
    out = convert_to_yolo(dataset, TaskType.SEGMENTATION, tmp_path / "yolo")

    assert (out / "labels/train/a.txt").read_text() == (
        "0 0.125000 0.250000 0.375000 0.250000 0.375000 0.750000 0.125000 0.750000\n"
    )
    # The two-part object becomes one polygon: 4+1 points, 3+1 points, walked as one outline.
    merged = (out / "labels/train/b.txt").read_text().split()
    assert merged[0] == "1" and len(merged[1:]) == 2 * 9


def test_pose_labels_and_keypoint_shape(dataset: DiceDataset, tmp_path: Path) -> None:
    out = convert_to_yolo(dataset, TaskType.POSE, tmp_path / "yolo")
    data = yaml.safe_load((out / "data.yaml").read_text())

    assert (data["kpt_shape"], data["flip_idx"]) == ([3, 3], [0, 2, 1])
    assert data["kpt_names"] == {0: ["nose", "left_eye", "right_eye"], 1: ["nose", "left_eye", "right_eye"]}
    assert (out / "labels/train/b.txt").read_text() == (
        "1 0.500000 0.500000 1.000000 1.000000 0.500000 0.500000 2 0.000000 0.000000 0 0.625000 0.416667 2\n"
    )


def test_classification_becomes_image_folders_in_name_order(tmp_path: Path) -> None:
    classes = [{"id": 0, "name": "zebra"}, {"id": 1, "name": "ant"}]
    images = [
        image(1, "a.jpg", "train", [{"id": 1, "class_id": 0}]),
        image(2, "x/b.jpg", "train", [{"id": 2, "class_id": 1}]),
        image(3, "c.jpg", "val", [{"id": 3, "class_id": 1}]),
        image(4, "unlabelled.jpg", "val", []),
    ]
    root = write_dice(
        tmp_path / "dice", {"annotations_classification.json": task_file("classification", images, classes)}
    )
    out = convert_to_yolo(load_dice(root), TaskType.CLASSIFICATION, tmp_path / "yolo")

    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert files == ["train/ant/x/b.jpg", "train/zebra/a.jpg", "val/ant/c.jpg"]
    assert (out / "val/zebra").is_dir()  # every class exists in every split, even when empty
    data = yaml.safe_load((out / "data.yaml").read_text())
    # Ultralytics numbers class folders alphabetically; data.yaml says which DICE id each index is.
    assert (data["names"], data["dice_class_ids"]) == ({0: "ant", 1: "zebra"}, {0: 1, 1: 0})


def test_a_multi_label_classification_image_is_refused(tmp_path: Path) -> None:
    images = [
        image(1, "a.jpg", "train", [{"id": 1, "class_id": 0}, {"id": 2, "class_id": 1}]),
        image(2, "b.jpg", "val", []),
    ]
    root = write_dice(
        tmp_path / "dice", {"annotations_classification.json": task_file("classification", images)}
    )

    with pytest.raises(AppError) as caught:
        convert_to_yolo(load_dice(root), TaskType.CLASSIFICATION, tmp_path / "yolo")
    assert caught.value.errors[0].reason == (
        "images/train/a.jpg has 2 classes; classification training takes one class per image"
    )


def test_output_is_deterministic_whatever_the_input_order(tmp_path: Path) -> None:
    shuffled = list(reversed(detection_images()))
    for img in shuffled:
        img["annotations"].reverse()
    one = write_dice(
        tmp_path / "one", {"annotations_detection.json": task_file("detection", detection_images())}
    )
    two = write_dice(tmp_path / "two", {"annotations_detection.json": task_file("detection", shuffled)})

    a = convert_to_yolo(load_dice(one), TaskType.DETECTION, tmp_path / "a")
    b = convert_to_yolo(load_dice(two), TaskType.DETECTION, tmp_path / "b")

    files_a, files_b = tree(a), tree(b)
    # Only data.yaml's `path:` (where the output is) may differ.
    assert files_a.pop("data.yaml").replace(str(a).encode(), b"X") == files_b.pop("data.yaml").replace(
        str(b).encode(), b"X"
    )
    assert files_a == files_b


def test_a_failed_conversion_leaves_nothing(dataset: DiceDataset, tmp_path: Path) -> None:
    out_root = tmp_path / "out"
    out_root.mkdir()
    (dataset.root / "images/val/d.jpg").unlink()  # vanishes between validation and conversion

    with pytest.raises(FileNotFoundError):
        convert_to_yolo(dataset, TaskType.DETECTION, out_root / "yolo")
    assert list(out_root.iterdir()) == []


def test_a_dataset_without_val_images_is_refused(tmp_path: Path) -> None:
    images = [img for img in detection_images() if img["split"] == "train"]
    root = write_dice(tmp_path / "dice", {"annotations_detection.json": task_file("detection", images)})

    with pytest.raises(AppError) as caught:
        convert_to_yolo(load_dice(root), TaskType.DETECTION, tmp_path / "out" / "yolo")
    assert caught.value.status == 422
    assert caught.value.errors[0].field == "splits"
    assert list((tmp_path / "out").iterdir()) == []


def test_converting_onto_an_existing_folder_is_a_conflict(dataset: DiceDataset, tmp_path: Path) -> None:
    (tmp_path / "yolo").mkdir()

    with pytest.raises(AppError) as caught:
        convert_to_yolo(dataset, TaskType.DETECTION, tmp_path / "yolo")
    assert caught.value.status == 409


def test_the_cache_converts_once_per_key(dataset: DiceDataset, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = convert_cached(dataset, TaskType.DETECTION, cache, "abc123")
    stamp = (first / "data.yaml").stat().st_mtime_ns

    def must_not_load() -> DiceDataset:
        raise AssertionError("a cache hit must not read the dataset")

    second = convert_cached(must_not_load, TaskType.DETECTION, cache, "abc123")
    assert second == first
    assert (second / "data.yaml").stat().st_mtime_ns == stamp
    assert json.loads((first / MARKER_FILE).read_text())["key"] == "abc123"

    other = convert_cached(lambda: dataset, TaskType.DETECTION, cache, "def456")
    assert other != first and (other / "labels/train/a.txt").is_file()
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.name, other.name])  # no temp leftovers


def test_concurrent_conversions_of_one_key_agree(dataset: DiceDataset, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: convert_cached(dataset, TaskType.POSE, cache, "same"), range(4)))

    assert len(set(paths)) == 1
    assert [p.name for p in cache.iterdir()] == [paths[0].name]  # the losers cleaned up after themselves
    assert (paths[0] / "labels/train/a.txt").is_file()


def test_a_cache_key_cannot_escape_the_cache_folder(dataset: DiceDataset, tmp_path: Path) -> None:
    with pytest.raises(AppError) as caught:
        convert_cached(dataset, TaskType.DETECTION, tmp_path / "cache", "../../etc")
    assert caught.value.status == 422
    assert not (tmp_path / "cache").exists()
