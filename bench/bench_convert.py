"""Benchmark: load + validate a DICE detection dataset of 10,000 images / 100,000 annotations, convert it.

Run: .venv/bin/python bench/bench_convert.py [--images 10000] [--per-image 10] [--dir DIR] [--keep]
Images are zero-byte placeholders: the loader takes sizes from the JSON and never opens an image.
Conversion creates 10,000 label files and 10,000 links, so its wall time is bounded by the filesystem;
user time is the converter's own cost, kernel time the filesystem's. Compare a disk folder with tmpfs
(`--dir /dev/shm`).
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.datasets.convert import convert_cached, convert_to_yolo
from app.datasets.dice import load_dice
from app.datasets.types import TaskType
from bench.suite import emit


def generate(
    root: Path, n_images: int, per_image: int, seed: int = 0, size: tuple[int, int] = (1280, 720)
) -> int:
    """Write a seed-shaped detection file (nested annotations, labeler metadata) and placeholder images
    of `size` (width, height) as the JSON declares it; boxes fit in the image."""
    rng = random.Random(seed)
    classes = [
        {"id": i, "name": f"class_{i}", "color": "#d96826", "supercategory": "object"} for i in range(20)
    ]
    images, aid = [], 0
    for iid in range(1, n_images + 1):
        split = "val" if iid % 5 == 0 else "test" if iid % 17 == 0 else "train"
        width, height = size
        anns = []
        for _ in range(per_image):
            aid += 1
            w = round(rng.uniform(4, min(300, width / 2)), 2)
            h = round(rng.uniform(4, min(300, height / 2)), 2)
            x, y = round(rng.uniform(0, width - w), 2), round(rng.uniform(0, height - h), 2)
            c = rng.randrange(len(classes))
            anns.append(
                {
                    "id": aid,
                    "image_id": iid,
                    "class_id": c,
                    "class_name": f"class_{c}",
                    "bbox": [x, y, w, h],
                    "bbox_format": "xywh",
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                    "attributes": {},
                }
            )
        name = f"cam{iid % 8}/frame_{iid:06d}.jpg"
        path = root / "images" / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        images.append(
            {
                "id": iid,
                "file_name": name,
                "width": width,
                "height": height,
                "depth": 3,
                "split": split,
                "annotations": anns,
                "metadata": {"labeled_by": "bench@example.com", "source": "platform_labeler_v1.0"},
            }
        )
    data = {"format_version": "1.0", "task_type": "object_detection", "classes": classes, "images": images}
    (root / "annotations_detection.json").write_text(json.dumps(data))
    (root / "metadata.json").write_text(json.dumps({"name": "bench"}))
    return aid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--per-image", type=int, default=10)
    parser.add_argument(
        "--dir", type=Path, help="make the work folder in here (default: the system temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trainyard-bench-", dir=args.dir))
    try:
        root = work / "dice"
        total = generate(root, args.images, args.per_image)
        size_mb = (root / "annotations_detection.json").stat().st_size / 1e6
        print(f"dataset: {args.images} images, {total} annotations, {size_mb:.1f} MB of JSON")

        print(f"work folder: {work}")
        timings: list[tuple[str, float, float, float]] = []

        def timed(what: str, step: Callable[[], object]) -> None:
            wall, before = time.perf_counter(), os.times()
            step()
            after = os.times()
            timings.append(
                (what, time.perf_counter() - wall, after.user - before.user, after.system - before.system)
            )

        dataset = load_dice(root)  # warm the page cache so the first timing is not a cold read
        timed("load + validate", lambda: load_dice(root))
        timed("convert to YOLO", lambda: convert_to_yolo(dataset, TaskType.DETECTION, work / "yolo"))
        timed(
            "convert_cached, miss", lambda: convert_cached(dataset, TaskType.DETECTION, work / "cache", "k1")
        )
        timed(
            "convert_cached, hit",
            lambda: convert_cached(lambda: load_dice(root), TaskType.DETECTION, work / "cache", "k1"),
        )
        print(f"{'step':22s} {'wall s':>8s} {'user s':>8s} {'kernel s':>8s} {'annotations/s (wall)':>22s}")
        for what, wall, user, system in timings:
            print(f"{what:22s} {wall:8.3f} {user:8.2f} {system:8.2f} {total / max(wall, 1e-9):22,.0f}")
        print(f"label files: {sum(1 for _ in (work / 'yolo' / 'labels').rglob('*.txt'))}")
        load_s = timings[0][1]
        rows = [
            {"measure": f"{what}, wall", "value": wall, "baseline": load_s, "unit": "s"}
            for what, wall, _, _ in timings[1:]
        ]
        emit("convert", rows, baseline="load + validate of the same file")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
