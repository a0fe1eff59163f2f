"""Preprocessing moves every task's annotations exactly: the expected values are worked out by hand from
the geometry (scale, letterbox offset, tile origin, EXIF rotation), not from the code under test."""

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from app.core.errors import AppError
from tests.versions.factories import (
    BOX,
    decoded,
    four_tasks,
    labels,
    named,
    pixels,
    png,
    render,
)
from tests.versions.factories import W as WIDTH


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return four_tasks(tmp_path_factory.mktemp("v") / "source")


def vertices(flat: list[float]) -> set[tuple[float, float]]:
    return {(flat[k], flat[k + 1]) for k in range(0, len(flat), 2)}


def test_stretch_resize_scales_every_task(root: Path) -> None:
    out = named(render(root, preprocessing={"resize": "32x96"}), "a.png")  # x * 0.5, y * 2
    assert (out.width, out.height) == (32, 96)
    assert labels(out, "detection")[0]["bbox"] == [4, 24, 8, 48]
    (seg,) = labels(out, "segmentation")
    assert seg["segmentation"] == [[4, 24, 12, 24, 12, 72, 4, 72]] and seg["bbox"] == [4, 24, 8, 48]
    (kp,) = labels(out, "pose")
    assert kp["keypoints"] == [8, 32, 2, 6, 60, 2, 10, 60, 1] and kp["bbox"] == [4, 24, 8, 48]
    assert labels(out, "classification") == [{"id": 40, "class_id": 0}]
    expected = cv2.resize(pixels(1), (32, 96), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(decoded(out), expected)
    assert out.lineage["resize"] == {
        "size": [32, 96],
        "mode": "stretch",
        "scale": [0.5, 2.0],
        "offset": [0, 0],
    }


def test_fit_letterboxes_and_offsets_the_labels(root: Path) -> None:
    # 64x48 into 32x32: scale 0.5 to 32x24, then 4 grey rows above and below.
    out = named(render(root, preprocessing={"resize": "32x32", "resize_mode": "fit"}), "a.png")
    assert labels(out, "detection")[0]["bbox"] == [4, 10, 8, 12]
    assert labels(out, "segmentation")[0]["segmentation"] == [[4, 10, 12, 10, 12, 22, 4, 22]]
    assert labels(out, "pose")[0]["keypoints"] == [8, 12, 2, 6, 19, 2, 10, 19, 1]
    image = decoded(out)
    assert (image[:4] == 114).all() and (image[28:] == 114).all()
    assert np.array_equal(image[4:28], cv2.resize(pixels(1), (32, 24), interpolation=cv2.INTER_AREA))


def test_tiles_clip_objects_and_hide_keypoints_outside(root: Path) -> None:
    outputs = render(root, preprocessing={"tile": "2x2"})  # 32x24 tiles; the box is cut in half at y = 24
    assert sorted(o.file_name for o in outputs if o.file_name.startswith("a")) == [
        "a_r0c0.png",
        "a_r0c1.png",
        "a_r1c0.png",
        "a_r1c1.png",
    ]
    top, bottom = named(outputs, "a_r0c0.png"), named(outputs, "a_r1c0.png")
    assert labels(top, "detection")[0]["bbox"] == [8, 12, 16, 12]
    assert labels(bottom, "detection")[0]["bbox"] == [8, 0, 16, 12]
    assert vertices(labels(top, "segmentation")[0]["segmentation"][0]) == {
        (8, 12),
        (24, 12),
        (24, 24),
        (8, 24),
    }
    assert vertices(labels(bottom, "segmentation")[0]["segmentation"][0]) == {
        (8, 0),
        (24, 0),
        (24, 12),
        (8, 12),
    }
    # Nose in the top tile, both eyes in the bottom one: outside a tile a point is unlabelled, not moved.
    assert labels(top, "pose")[0]["keypoints"] == [16, 16, 2, 0, 0, 0, 0, 0, 0]
    assert labels(bottom, "pose")[0]["keypoints"] == [0, 0, 0, 12, 6, 2, 20, 6, 1]
    right = named(outputs, "a_r0c1.png")
    assert labels(right, "detection") == [] and labels(right, "classification") == [{"id": 40, "class_id": 0}]
    assert np.array_equal(decoded(bottom), pixels(1)[24:48, 0:32])
    assert bottom.lineage["tile"] == {"col": 0, "row": 1, "box": [0, 24, 32, 48]}


def test_tiles_drop_objects_mostly_cut_away_and_empty_tiles_on_request(root: Path) -> None:
    strict = render(root, preprocessing={"tile": "2x2", "tile_min_visibility": 0.6})
    assert all(
        labels(o, t) == []
        for o in strict
        for t in ("detection", "segmentation", "pose")
        if o.file_name[0] == "a"
    )
    dropped = render(root, preprocessing={"tile": "2x2", "keep_empty_tiles": False})
    # a keeps its two tiles with half the object each; b's central box is quartered (25% < 30% in each
    # tile), and c has no object at all.
    assert sorted(o.file_name for o in dropped) == ["a_r0c0.png", "a_r1c0.png"]


def test_auto_orient_turns_pixels_and_labels_upright(tmp_path: Path) -> None:
    root = four_tasks(tmp_path / "source")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: upright is the stored grid turned 90 degrees clockwise
    source = root / "images/train/a.png"
    source.write_bytes(png(pixels(1), exif))
    out = named(render(root, preprocessing={"auto_orient": True}), "a.png")
    assert (out.width, out.height) == (48, 64)
    with Image.open(source) as stored:
        upright = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    assert np.array_equal(decoded(out), upright)
    # (x, y) -> (48 - y, x): the box's corners (8, 12) and (24, 36) land on (36, 8) and (12, 24).
    assert labels(out, "detection")[0]["bbox"] == [12, 8, 24, 16]
    assert vertices(labels(out, "segmentation")[0]["segmentation"][0]) == {
        (36, 8),
        (36, 24),
        (12, 24),
        (12, 8),
    }
    assert labels(out, "pose")[0]["keypoints"] == [32, 16, 2, 18, 12, 2, 18, 20, 1]
    assert out.lineage["orientation"] == 6
    # Without auto_orient the stored grid is kept, labels unchanged, and the output carries no EXIF.
    kept = named(render(root, preprocessing={"resize": "64x48"}), "a.png")
    assert np.array_equal(decoded(kept), pixels(1)) and labels(kept, "detection")[0]["bbox"] == BOX
    assert Image.open(io.BytesIO(kept.data)).getexif().get(0x0112) is None


def test_unreadable_images_wrong_sizes_and_small_tiles_are_refused_together(tmp_path: Path) -> None:
    root = four_tasks(tmp_path / "source")
    (root / "images/val/c.png").write_bytes(png(pixels(3, WIDTH + 2)))  # declared 64 wide, really 66
    (root / "images/train/b.png").write_bytes(b"not a picture")
    with pytest.raises(AppError) as refused:
        render(root, preprocessing={"tile": "2x2", "resize": "40x40"})
    fields = {e.field: e.reason for e in refused.value.errors}
    assert fields["images.images/val/c.png"] == "declared 64x48, but the file is 66x48"
    assert fields["images.images/train/b.png"].startswith("is not a readable image")
    assert (
        "2x2 tiles" in fields["preprocessing.tile"]
        and "are 32x24, smaller than the 40x40 input" in (fields["preprocessing.tile"])
    )
