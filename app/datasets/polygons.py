"""Joining a multi-part object outline into the single polygon a YOLO segmentation label holds.

A port of Ultralytics' `merge_multi_segment` (ultralytics/data/converter.py, AGPL-3.0), kept in step with
it so our labels equal what its COCO converter writes; the API process must not import ultralytics.
"""

import numpy as np
from numpy.typing import NDArray

Points = NDArray[np.float64]


def _closest_pair(a: Points, b: Points) -> tuple[int, int]:
    distances = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(np.argmin(distances, axis=None), distances.shape)
    return int(i), int(j)


def merge_polygons(polygons: list[list[float]] | tuple[tuple[float, ...], ...]) -> Points:
    """Connect the parts at their closest points with thin bridges, walking there and back; returns (N, 2)."""
    segments = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    idx_list: list[list[int]] = [[] for _ in segments]
    for i in range(1, len(segments)):
        a, b = _closest_pair(segments[i - 1], segments[i])
        idx_list[i - 1].append(a)
        idx_list[i].append(b)

    last = len(idx_list) - 1
    out: list[Points] = []
    # Forward pass: each part rotated to start at its bridge point; middle parts contribute one side.
    for i, idx in enumerate(idx_list):
        if len(idx) == 2 and idx[0] > idx[1]:
            idx = [len(segments[i]) - 1 - x for x in idx]
            segments[i] = segments[i][::-1, :]
        segments[i] = np.roll(segments[i], -idx[0], axis=0)
        segments[i] = np.concatenate([segments[i], segments[i][:1]])
        if i in {0, last}:
            out.append(segments[i])
        else:
            out.append(segments[i][0 : idx[1] - idx[0] + 1])
    # Backward pass: the other side of the middle parts, on the way back to the first part.
    for i in range(last, -1, -1):
        if i not in {0, last}:
            idx = idx_list[i]
            out.append(segments[i][abs(idx[1] - idx[0]) :])
    return np.concatenate(out, axis=0)
