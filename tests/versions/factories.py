"""A DICE dataset in all four tasks over two noisy PNGs (lossless, so pixels can be compared), and the
helpers that render a version request over it without a database."""

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.versions import schemas
from app.versions.manifest import annotation_json
from app.versions.plan import plan
from app.versions.render import Output
from tests.datasets.factories import KEYPOINT_SCHEMA, cls, det, image, pose, seg, task_file, write_dice

W, H = 64, 48
BOX = [8, 12, 16, 24]  # x 8..24, y 12..36: cut by the 2x2 grid's middle line y = 24, half on each side
SQUARE = [8, 12, 24, 12, 24, 36, 8, 36]  # the same rectangle as a polygon
KEYPOINTS = [16, 16, 2, 12, 30, 2, 20, 30, 1]  # nose in the top-left tile, both eyes below it
# Objects of the second image sit in the middle, so no rotation or zoom of the tests pushes them out.
CENTRAL_BOX = [24, 16, 16, 16]
CENTRAL_POLYGON = [26, 18, 38, 20, 36, 30, 27, 29]
CENTRAL_KEYPOINTS = [32, 24, 2, 28, 22, 2, 36, 22, 2]


def pixels(seed: int, width: int = W, height: int = H) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png(array: np.ndarray, exif: Image.Exif | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG", exif=exif or Image.Exif())
    return out.getvalue()


def four_tasks(root: Path) -> Path:
    """a.png (train) with objects cut by the tile grid, b.png (train) with central ones, c.png (val)."""
    names = {1: "a.png", 2: "b.png", 3: "c.png"}
    splits = {1: "train", 2: "train", 3: "val"}

    def entry(iid: int, anns: list[dict[str, Any]]) -> dict[str, Any]:
        return image(iid, names[iid], splits[iid], anns, width=W, height=H)

    files = {
        "annotations_detection.json": task_file(
            "object_detection",
            [entry(1, [det(10, 1, 0, BOX)]), entry(2, [det(11, 2, 1, CENTRAL_BOX)]), entry(3, [])],
        ),
        "annotations_segmentation.json": task_file(
            "segmentation",
            [
                entry(1, [seg(20, 1, 0, [SQUARE], bbox=BOX)]),
                entry(2, [seg(21, 2, 1, [CENTRAL_POLYGON])]),
                entry(3, []),
            ],
        ),
        "annotations_pose.json": task_file(
            "pose",
            [
                entry(1, [pose(30, 1, 0, BOX, KEYPOINTS)]),
                entry(2, [pose(31, 2, 1, CENTRAL_BOX, CENTRAL_KEYPOINTS)]),
                entry(3, []),
            ],
            keypoint_schema=KEYPOINT_SCHEMA,
        ),
        "annotations_classification.json": task_file(
            "classification",
            [entry(1, [cls(40, 1, 0)]), entry(2, [cls(41, 2, 1)]), entry(3, [cls(42, 3, 0)])],
        ),
    }
    write_dice(root, files, make_images=False)
    for iid, name in names.items():
        target = root / "images" / splits[iid] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png(pixels(iid)))
    return root


def render(root: Path, **body: Any) -> list[Output]:
    """Every output a version request makes from the dataset at `root` (in memory)."""
    planned = plan(root, schemas.VersionCreate(**body))
    assert planned.renderer is not None
    return [o for item in planned.items for o in planned.renderer.render(item)]


def labels(output: Output, task: str) -> list[dict[str, Any]]:
    """The output's annotations of one task, as the manifest writes them."""
    return [annotation_json(a) for t, anns in output.tasks.items() if t.value == task for a in anns]


def named(outputs: list[Output], file_name: str) -> Output:
    found = [o for o in outputs if o.file_name == file_name]
    assert len(found) == 1, [o.file_name for o in outputs]
    return found[0]


def decoded(output: Output) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(output.data)).convert("RGB"))
