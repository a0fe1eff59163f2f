"""One source image -> the images a version holds: orient, tile and resize (every split), then augment
(training split only), each output with its annotations and the record of how it was made (lineage).

Annotations are in the image's stored pixel grid (as in COCO); `auto_orient` turns pixels and labels
upright together and every output is written without EXIF, so no reader can rotate one but not the other.
Pixels move with OpenCV, annotations with app.datasets.geometry (exact) and app.versions.augment.
"""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.datasets.geometry import Window, clip, orient, oriented_size
from app.datasets.types import DiceAnnotation, TaskType
from app.versions.augment import FILL, Annotations, Augmenter, variant_seed
from app.versions.schemas import Augmentation, Preprocessing

EXIF_ORIENTATION = 0x0112


def opencv() -> Any:
    """OpenCV, imported when pixels first move: ~50 MB that every process importing the app would
    otherwise carry (the API, the scheduler), though only a freeze or a preview uses it."""
    import cv2

    return cv2


class UnreadableImage(ValueError):
    """A source whose header looked fine but whose pixels OpenCV cannot decode."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is not a readable image")
        self.path = path


@dataclass
class Source:
    """A kept image with its annotations in every task, and where the version places it."""

    path: str  # relative to the dataset's source folder
    sha256: str
    split: str
    file_name: str
    width: int
    height: int
    tasks: Annotations


@dataclass
class Output:
    file_name: str
    split: str
    width: int
    height: int
    tasks: Annotations
    lineage: dict[str, Any]
    ext: str
    data: bytes = field(default=b"", repr=False)
    sha256: str = ""


def probe(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    with Image.open(path) as img:
        return img.width, img.height


def exif_orientation(path: Path) -> int:
    """The EXIF orientation (1 when absent; a PNG whose EXIF follows its pixels is decoded to find it)."""
    with Image.open(path) as img:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
        return orientation if orientation in range(1, 9) else 1


def windows(width: int, height: int, pre: Preprocessing) -> list[tuple[dict[str, Any], Window, int, int]]:
    """Each output's window on the (upright) image, its output size, and what to record about it."""
    cols, rows = (int(v) for v in pre.tile.split("x")) if pre.tile else (1, 1)
    out = []
    for row in range(rows):
        for col in range(cols):
            x0, x1 = col * width // cols, (col + 1) * width // cols
            y0, y1 = row * height // rows, (row + 1) * height // rows
            window, size = Window(x0, y0, x1, y1), (x1 - x0, y1 - y0)
            record: dict[str, Any] = {"tile": None, "resize": None}
            if pre.tile:
                record["tile"] = {"col": col, "row": row, "box": [x0, y0, x1, y1]}
            if pre.resize:
                window, size = _resized(window, size, pre)
                record["resize"] = {
                    "size": list(size),
                    "mode": pre.resize_mode,
                    "scale": [window.sx, window.sy],
                    "offset": [window.dx, window.dy],
                }
            out.append((record, window, *size))
    return out


def _resized(window: Window, size: tuple[int, int], pre: Preprocessing) -> tuple[Window, tuple[int, int]]:
    assert pre.resize is not None
    tw, th = size
    w, h = (int(v) for v in pre.resize.split("x"))
    if pre.resize_mode == "stretch":
        return window.then_scale(w / tw, h / th), (w, h)
    nw, nh = _fitted(tw, th, w, h)
    return window.then_scale(nw / tw, nh / th, (w - nw) // 2, (h - nh) // 2), (w, h)


def _fitted(tw: int, th: int, w: int, h: int) -> tuple[int, int]:
    r = min(w / tw, h / th)
    return max(1, round(tw * r)), max(1, round(th * r))


class Renderer:
    """Makes a version's outputs from its sources; one instance serves every thread of a freeze."""

    def __init__(
        self,
        root: Path,
        pre: Preprocessing,
        aug: Augmentation,
        flip_idx: tuple[int, ...] | None = None,
    ) -> None:
        self.root, self.pre, self.aug, self.flip_idx = root, pre, aug, flip_idx
        self.augmenter = Augmenter(aug) if aug.active else None

    def plan(self, source: Source) -> list[Output]:
        """The outputs' annotations without touching pixels (augmented copies counted as the original)."""
        return self._outputs(source, None)

    def render(self, source: Source) -> list[Output]:
        """The outputs with their encoded bytes."""
        cv2 = opencv()
        data = np.fromfile(self.root / source.path, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is None:
            raise UnreadableImage(source.path)
        return self._outputs(source, cv2.cvtColor(image, cv2.COLOR_BGR2RGB))

    def _outputs(self, source: Source, image: np.ndarray | None) -> list[Output]:
        tasks, orientation = source.tasks, 1
        width, height = source.width, source.height
        if self.pre.auto_orient:
            orientation = exif_orientation(self.root / source.path)
            tasks = {t: [orient(a, width, height, orientation) for a in anns] for t, anns in tasks.items()}
            width, height = oriented_size(width, height, orientation)
            if image is not None:
                image = orient_pixels(image, orientation)
        stem, ext = _name(source.file_name)
        out: list[Output] = []
        planned = windows(width, height, self.pre)
        for index, (record, window, w, h) in enumerate(planned):
            kept = {t: _clipped(anns, window, self.pre.tile_min_visibility) for t, anns in tasks.items()}
            if self.pre.tile and not self.pre.keep_empty_tiles and _empty(kept):
                continue
            suffix = f"_r{record['tile']['row']}c{record['tile']['col']}" if record["tile"] else ""
            lineage = {
                "source": {"path": source.path, "sha256": source.sha256},
                "orientation": orientation,
                **record,
                "augmentation": None,
            }
            pixels = None if image is None else crop_resize(image, window, w, h)
            out.append(self._output(f"{stem}{suffix}{ext}", source.split, w, h, kept, lineage, pixels, ext))
            if self.augmenter is None or source.split != "train":
                continue
            for variant in range(1, self.aug.multiplier):
                seed = variant_seed(self.aug.seed, source.sha256, index, variant)
                name = f"{stem}{suffix}_aug{variant}{ext}"
                extra = {"augmentation": {"variant": variant, "seed": seed, "applied": []}}
                if pixels is None:
                    out.append(self._output(name, source.split, w, h, kept, {**lineage, **extra}, None, ext))
                    continue
                done = self.augmenter(pixels, kept, self.flip_idx, seed)
                extra["augmentation"]["applied"] = done.applied
                ah, aw = done.image.shape[:2]
                out.append(
                    self._output(
                        name, source.split, aw, ah, done.tasks, {**lineage, **extra}, done.image, ext
                    )
                )
        return out

    @staticmethod
    def _output(
        name: str,
        split: str,
        w: int,
        h: int,
        tasks: Annotations,
        lineage: dict[str, Any],
        pixels: np.ndarray | None,
        ext: str,
    ) -> Output:
        output = Output(name, split, w, h, tasks, lineage, ext)
        if pixels is not None:
            output.data = encode(pixels, ext)
            output.sha256 = hashlib.sha256(output.data).hexdigest()
        return output


def _empty(tasks: Annotations) -> bool:
    """No object left (a classification label is not one, unless classification is all there is)."""
    objects = [anns for task, anns in tasks.items() if task is not TaskType.CLASSIFICATION]
    return bool(objects) and not any(objects)


def _clipped(anns: list[DiceAnnotation], window: Window, min_visibility: float) -> list[DiceAnnotation]:
    return [c for a in anns if (c := clip(a, window, min_visibility)) is not None]


def _name(file_name: str) -> tuple[str, str]:
    """(stem, extension) of an output: JPEG stays JPEG, PNG stays PNG, anything else becomes PNG."""
    stem, dot, ext = file_name.rpartition(".")
    if dot and ext.lower() in ("jpg", "jpeg", "png"):
        return stem, f".{ext}"
    return file_name.replace(".", "_"), ".png"


def orient_pixels(image: np.ndarray, orientation: int) -> np.ndarray:
    """The stored grid turned upright (the same mapping as app.datasets.geometry.orient)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, k=1),
    }
    op = ops.get(orientation)
    return image if op is None else np.ascontiguousarray(op(image))


def crop_resize(image: np.ndarray, window: Window, w: int, h: int) -> np.ndarray:
    """The window's pixels drawn on a w x h canvas (stretched, or fitted with grey bars)."""
    cv2 = opencv()
    crop = image[int(window.y0) : int(window.y1), int(window.x0) : int(window.x1)]
    ch, cw = crop.shape[:2]
    nw, nh = round(cw * window.sx), round(ch * window.sy)
    if (nw, nh) != (cw, ch):
        shrink = nw < cw and nh < ch
        crop = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if (nw, nh) == (w, h):
        return np.ascontiguousarray(crop)
    left, top = round(window.dx), round(window.dy)
    return cv2.copyMakeBorder(
        crop, top, h - nh - top, left, w - nw - left, cv2.BORDER_CONSTANT, value=(FILL, FILL, FILL)
    )


def encode(image: np.ndarray, ext: str) -> bytes:
    cv2 = opencv()
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext.lower() in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(ext, bgr, params)
    if not ok:
        raise ValueError(f"could not encode a {ext} image")
    return data.tobytes()
