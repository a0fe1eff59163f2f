"""Annotation geometry against independent references: PIL's exif_transpose for every EXIF orientation,
and polygons clipped to windows whose answers are worked out by hand."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from app.datasets.geometry import Window, clip, clip_polygon, orient, oriented_size, polygon_area
from app.datasets.types import DiceAnnotation
from app.versions.render import orient_pixels


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_moves_points_and_pixels_like_pil(orientation: int) -> None:
    w, h, x, y = 7, 5, 1, 3
    stored = np.zeros((h, w, 3), dtype=np.uint8)
    stored[y, x] = 255  # one marked pixel
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture = Image.fromarray(stored)
    picture.info["exif"] = exif.tobytes()
    upright = np.asarray(ImageOps.exif_transpose(picture))
    assert np.array_equal(orient_pixels(stored, orientation), upright)
    assert upright.shape[1::-1] == oriented_size(w, h, orientation)
    ((row, col),) = np.argwhere(upright[..., 0] == 255)
    # The marked pixel's centre follows the annotation mapping.
    moved = orient(DiceAnnotation(1, 0, keypoints=(x + 0.5, y + 0.5, 2)), w, h, orientation)
    assert moved.keypoints == (col + 0.5, row + 0.5, 2)


def test_a_diagonal_edge_is_clipped_exactly() -> None:
    triangle = (0.0, 0.0, 30.0, 0.0, 0.0, 30.0)  # below the line x + y = 30
    window = Window(15, 5, 25, 15)
    cut = clip_polygon(triangle, window)
    assert {(cut[k], cut[k + 1]) for k in range(0, len(cut), 2)} == {(15, 5), (25, 5), (15, 15)}
    assert len(cut) == 6 and polygon_area(cut) == 50
    # The window holds 50 of the triangle's 450 px²: kept at a 10% threshold, dropped at 12%, and moved
    # to the window's origin with a 2x scale on the way.
    ann = DiceAnnotation(1, 0, bbox=(0, 0, 30, 30), polygons=(triangle,))
    kept = clip(ann, window.then_scale(2, 2), min_visibility=0.1)
    assert kept is not None and kept.bbox == (0, 0, 20, 20)
    moved = kept.polygons[0]
    assert {(moved[k], moved[k + 1]) for k in range(0, len(moved), 2)} == {(0, 0), (20, 0), (0, 20)}
    assert clip(ann, window, min_visibility=0.12) is None
    assert clip(ann, Window(40, 40, 50, 50)) is None  # nothing inside at all
