"""Exact annotation geometry for a version's preprocessing: EXIF orientation, crop to a window, scale.

Coordinates are continuous pixels: an image of width W spans x in [0, W], so a flip maps x to W - x and a
resize by s maps x to x * s (what cv2.resize does to pixel edges). Boxes and polygons are clipped to a
window exactly (Sutherland-Hodgman against its rectangle); a keypoint outside it becomes unlabelled
(0, 0, 0) rather than being pushed to the edge. No pixels here: app/versions/render.py moves them.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace

from app.datasets.types import DiceAnnotation

Box = tuple[float, float, float, float]

# EXIF orientation -> how a stored-grid point (x, y) of a w x h image lands in the upright image.
# 2..8 are PIL's exif_transpose methods: mirror, 180, flip, transpose, 270 (clockwise), transverse, 90.
_ORIENT = {
    1: lambda x, y, w, h: (x, y),
    2: lambda x, y, w, h: (w - x, y),
    3: lambda x, y, w, h: (w - x, h - y),
    4: lambda x, y, w, h: (x, h - y),
    5: lambda x, y, w, h: (y, x),
    6: lambda x, y, w, h: (h - y, x),
    7: lambda x, y, w, h: (h - y, w - x),
    8: lambda x, y, w, h: (y, w - x),
}


def oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def orient(ann: DiceAnnotation, width: int, height: int, orientation: int) -> DiceAnnotation:
    """The annotation of the stored pixel grid, moved with the pixels when the orientation is applied."""
    if orientation not in _ORIENT or orientation == 1:
        return ann
    f = _ORIENT[orientation]

    def point(x: float, y: float) -> tuple[float, float]:
        return f(x, y, width, height)

    bbox = None
    if ann.bbox is not None:
        x, y, w, h = ann.bbox
        (ax, ay), (bx, by) = point(x, y), point(x + w, y + h)
        bbox = (min(ax, bx), min(ay, by), abs(bx - ax), abs(by - ay))
    polygons = tuple(_flat(point(p[k], p[k + 1]) for k in range(0, len(p), 2)) for p in ann.polygons)
    kpts = ann.keypoints
    keypoints = tuple(
        v
        for k in range(0, len(kpts), 3)
        for v in ((*point(kpts[k], kpts[k + 1]), kpts[k + 2]) if kpts[k + 2] else (0.0, 0.0, 0))
    )
    return replace(ann, bbox=bbox, polygons=polygons, keypoints=keypoints)


@dataclass(frozen=True)
class Window:
    """A rectangle of the source image, [x0, x1] x [y0, y1], drawn onto an output canvas at
    x' = (x - x0) * sx + dx, y' = (y - y0) * sy + dy (a tile, a resize, a letterbox, or all three)."""

    x0: float
    y0: float
    x1: float
    y1: float
    sx: float = 1.0
    sy: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def point(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.x0) * self.sx + self.dx, (y - self.y0) * self.sy + self.dy

    def then_scale(self, sx: float, sy: float, dx: float = 0.0, dy: float = 0.0) -> "Window":
        """This window, then its output scaled by (sx, sy) and shifted by (dx, dy)."""
        return replace(self, sx=self.sx * sx, sy=self.sy * sy, dx=self.dx * sx + dx, dy=self.dy * sy + dy)


def clip(ann: DiceAnnotation, window: Window, min_visibility: float = 0.0) -> DiceAnnotation | None:
    """The part of `ann` inside the window, in output coordinates; None when too little of it is left.

    The visible fraction is by area (of the polygons when the object has them, else of its box); an
    object without geometry (a classification label) is always kept.
    """
    if ann.bbox is None and not ann.polygons and not ann.keypoints:
        return ann
    polygons = tuple(c for c in (clip_polygon(p, window) for p in ann.polygons) if len(c) >= 6)
    if ann.polygons:
        before = sum(polygon_area(p) for p in ann.polygons)
        after = sum(polygon_area(p) for p in polygons)
        if after <= 0 or (before > 0 and after / before < min_visibility):
            return None
    polygons = tuple(_flat(window.point(p[k], p[k + 1]) for k in range(0, len(p), 2)) for p in polygons)
    bbox = None
    if ann.bbox is not None:
        if polygons:
            bbox = _bounds(polygons)
        else:
            x, y, w, h = ann.bbox
            cx0, cy0 = max(x, window.x0), max(y, window.y0)
            cx1, cy1 = min(x + w, window.x1), min(y + h, window.y1)
            if cx1 <= cx0 or cy1 <= cy0:
                return None
            area = w * h
            if area > 0 and (cx1 - cx0) * (cy1 - cy0) / area < min_visibility:
                return None
            (ax, ay), (bx, by) = window.point(cx0, cy0), window.point(cx1, cy1)
            bbox = (ax, ay, bx - ax, by - ay)
    return replace(ann, bbox=bbox, polygons=polygons, keypoints=_keypoints(ann.keypoints, window))


def _keypoints(kpts: tuple[float, ...], window: Window) -> tuple[float, ...]:
    out: list[float] = []
    for k in range(0, len(kpts), 3):
        x, y, v = kpts[k], kpts[k + 1], kpts[k + 2]
        if v and window.x0 <= x <= window.x1 and window.y0 <= y <= window.y1:
            out.extend((*window.point(x, y), v))
        else:
            out.extend((0.0, 0.0, 0))
    return tuple(out)


def _bounds(polygons: tuple[tuple[float, ...], ...]) -> Box:
    xs = [v for p in polygons for v in p[0::2]]
    ys = [v for p in polygons for v in p[1::2]]
    return (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def _flat(points: Iterable[tuple[float, float]]) -> tuple[float, ...]:
    return tuple(v for pt in points for v in pt)


def clip_polygon(flat: tuple[float, ...], window: Window) -> tuple[float, ...]:
    """Sutherland-Hodgman: the polygon cut to the window's rectangle (source coordinates), flattened."""
    points = [(flat[k], flat[k + 1]) for k in range(0, len(flat) - 1, 2)]
    edges = (
        (lambda p: p[0] >= window.x0, lambda a, b: _cross_x(a, b, window.x0)),
        (lambda p: p[0] <= window.x1, lambda a, b: _cross_x(a, b, window.x1)),
        (lambda p: p[1] >= window.y0, lambda a, b: _cross_y(a, b, window.y0)),
        (lambda p: p[1] <= window.y1, lambda a, b: _cross_y(a, b, window.y1)),
    )
    for inside, cross in edges:
        if not points:
            break
        kept: list[tuple[float, float]] = []
        for i, current in enumerate(points):
            previous = points[i - 1]
            if inside(current):
                if not inside(previous):
                    kept.append(cross(previous, current))
                kept.append(current)
            elif inside(previous):
                kept.append(cross(previous, current))
        points = kept
    # A vertex on the window's edge comes out twice (once per edge that passes it): keep one.
    points = [p for i, p in enumerate(points) if p != points[i - 1]] if len(points) > 1 else points
    return tuple(v for p in points for v in p)


def _cross_x(a: tuple[float, float], b: tuple[float, float], x: float) -> tuple[float, float]:
    t = (x - a[0]) / (b[0] - a[0])
    return x, a[1] + t * (b[1] - a[1])


def _cross_y(a: tuple[float, float], b: tuple[float, float], y: float) -> tuple[float, float]:
    t = (y - a[1]) / (b[1] - a[1])
    return a[0] + t * (b[0] - a[0]), y


def polygon_area(flat: tuple[float, ...]) -> float:
    """Shoelace formula; the absolute area whatever the winding."""
    xs, ys = flat[0::2], flat[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2
