"""Benchmark: freeze a version of 1,000 real JPEGs with 3x augmentation, against a plain loop calling
Albumentations on the same images in the same run.

Run: .venv/bin/python bench/bench_augment.py [--images 1000] [--size 640x480] [--rounds 2] [--dir DIR]
                                               [--keep]

Both paths do the same work per image: decode, make two augmented variants of every training image
(horizontal flip, rotation ±15°, brightness/contrast ±20%) with their boxes, encode every output (the
original included) as JPEG 95 and write it. The freeze (`create_version`, a thread per core) also hashes
the sources, checks them, stores outputs by content and writes the manifest; the plain loop is one
thread with nothing around Albumentations. Numbers are output images per second of wall time.
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.suite import embedded_workdir, emit

AUGMENTATION = {"multiplier": 3, "horizontal_flip": True, "rotation": 15, "brightness": 0.2, "contrast": 0.2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each path, alternating")
    parser.add_argument("--dir", type=Path, help="make the work folder in here (default: system temp)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with embedded_workdir("trainyard-augment-", args.dir, args.keep) as work:
        run(work, args)


def write_dataset(root: Path, n: int, width: int, height: int) -> list[dict[str, Any]]:
    """Grey gradients with coloured rectangles (what JPEG compresses like a photo), one box per rectangle."""
    from PIL import Image, ImageDraw

    rng = random.Random(0)
    images, aid = [], 0
    for iid in range(1, n + 1):
        split = "val" if iid % 5 == 0 else "train"
        picture = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        draw, anns = ImageDraw.Draw(picture), []
        for _ in range(5):
            w, h = rng.randint(20, width // 3), rng.randint(20, height // 3)
            x, y = rng.randint(0, width - w), rng.randint(0, height - h)
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(rng.randrange(256), rng.randrange(256), 90))
            aid += 1
            anns.append({"id": aid, "image_id": iid, "class_id": aid % 3, "bbox": [x, y, w, h]})
        path = root / "images" / split / f"{iid:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path, "JPEG", quality=90)
        images.append(
            {
                "id": iid,
                "file_name": path.name,
                "width": width,
                "height": height,
                "split": split,
                "annotations": anns,
            }
        )
    classes = [{"id": i, "name": f"class_{i}"} for i in range(3)]
    body = {"task_type": "object_detection", "classes": classes, "images": images}
    (root / "annotations_detection.json").write_text(json.dumps(body))
    return images


def plain_loop(root: Path, images: list[dict[str, Any]], out: Path) -> int:
    """The floor: one thread, Albumentations and OpenCV only."""
    import cv2

    from app.versions.augment import albumentations

    A = albumentations()
    compose = A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-15, 15), scale=(1, 1), keep_ratio=True, border_mode=0, fill=114, p=1.0),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=1.0),
        ],
        bbox_params=A.BboxParams(format="coco", label_fields=["ids"], clip=True, filter_invalid_bboxes=True),
        seed=0,
    )
    out.mkdir(parents=True)
    written = 0
    for image in images:
        pixels = cv2.cvtColor(
            cv2.imread(str(root / "images" / image["split"] / image["file_name"])), cv2.COLOR_BGR2RGB
        )
        variants = [pixels]
        if image["split"] == "train":
            boxes = [a["bbox"] for a in image["annotations"]]
            for _ in range(2):
                variants.append(compose(image=pixels, bboxes=boxes, ids=list(range(len(boxes))))["image"])
        for k, variant in enumerate(variants):
            ok, data = cv2.imencode(
                ".jpg", cv2.cvtColor(variant, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
            assert ok
            (out / f"{image['id']}_{k}.jpg").write_bytes(data.tobytes())
            written += 1
    return written


def run(work: Path, args: argparse.Namespace) -> None:
    from app.core import migrate
    from app.core.db import Database
    from app.core.settings import get_settings
    from app.datasets.dice import load_dice, summarize
    from app.models import Dataset, Project
    from app.versions import schemas, service

    width, height = (int(v) for v in args.size.split("x"))
    settings = get_settings()
    storage = settings.resolved_storage_root
    source = storage / "projects/bench/datasets/bench/source"
    images = write_dataset(source, args.images, width, height)
    migrate.upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    with db.session() as session:
        project = Project(name="bench", slug="bench")
        summary = summarize(load_dice(source))
        session.add(
            Dataset(project=project, name="bench", slug="bench", total_annotations=5 * args.images, **summary)
        )
        session.flush()
        project_id = project.id
    print(f"dataset: {args.images} JPEGs of {args.size}, 80% train; {AUGMENTATION}; {os.cpu_count()} cores")

    def timed(step: Any) -> tuple[Any, float, float]:
        wall, before = time.perf_counter(), os.times()
        result = step()
        after = os.times()
        return result, time.perf_counter() - wall, (after.user - before.user) + (after.system - before.system)

    rows: list[tuple[str, int, int, float, float]] = []
    for r in range(args.rounds):
        # Alternating the order (and a new seed per freeze, so no output exists yet) keeps the other
        # load on a shared machine from favouring one path.
        body = schemas.VersionCreate(augmentation=schemas.Augmentation(**AUGMENTATION, seed=r))
        steps = [
            (
                "freeze (create_version)",
                lambda b=body: service.create_version(db, project_id, b)[0].image_count,
            ),
            ("plain Albumentations loop", lambda out=work / f"plain{r}": plain_loop(source, images, out)),
        ]
        for what, step in steps if r % 2 == 0 else steps[::-1]:
            count, wall, cpu = timed(step)
            rows.append((what, r, count, wall, cpu))
    assert len({count for _, _, count, _, _ in rows}) == 1, rows
    print(f"{'path':28s} {'round':>5s} {'outputs':>8s} {'wall s':>8s} {'cpu s':>8s} {'images/s':>9s}")
    for what, r, count, wall, cpu in rows:
        print(f"{what:28s} {r:5d} {count:8d} {wall:8.2f} {cpu:8.2f} {count / wall:9.1f}")
    best = {what: min(wall for w, _, _, wall, _ in rows if w == what) for what, _, _, _, _ in rows}
    freeze_s, loop_s = best["freeze (create_version)"], best["plain Albumentations loop"]
    print(f"best of {args.rounds}: freeze / plain loop = {loop_s / freeze_s:.2f}x (images/s ratio)")
    row = {"measure": "augmented freeze, wall (best)", "value": freeze_s, "baseline": loop_s, "unit": "s"}
    emit("augment", [row], baseline="plain Albumentations loop, same images")
    db.dispose()


if __name__ == "__main__":
    main()
