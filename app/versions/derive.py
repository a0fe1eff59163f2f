"""A version that preprocesses or augments: its sources checked, its images generated (in parallel) and
stored by content, and the selection the manifest describes rebuilt from them.

Generated images live at `<dataset>/generated/<sha256[:2]>/<sha256>/<file name>`: the manifest's paths
hold no version number, so the same request on the same data gives the same manifest checksum, versions
that make the same image share its file, and two outputs with equal bytes (a variant no transform
changed) still have a path each.
"""

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import AppError, ErrorCode, FieldError
from app.datasets.types import DiceImage, TaskAnnotations, TaskType
from app.inference.images import UNREADABLE, why_unreadable
from app.versions.manifest import Selection
from app.versions.render import Output, Renderer, Source, opencv, probe, windows
from app.versions.schemas import Augmentation, Preprocessing

GENERATED = "generated"
_LISTED = 20  # bad images named in one error; the count says how many more


def active(pre: Preprocessing, aug: Augmentation) -> bool:
    return pre.active or aug.active


def sources(selection: Selection, hashes: dict[str, str], placed: dict[str, tuple[str, str]]) -> list[Source]:
    """Each kept image once, with its annotations in every task that lists it."""
    by_path: dict[str, Source] = {}
    for task in sorted(selection.tasks):
        for image in selection.tasks[task].images:
            source = by_path.get(image.path)
            if source is None:
                split, file_name = placed[image.path]
                source = Source(
                    image.path, hashes[image.path], split, file_name, image.width, image.height, {}
                )
                by_path[image.path] = source
            source.tasks[task] = sorted(image.annotations, key=lambda a: a.id)
    return [by_path[p] for p in selection.paths]


def check(items: list[Source], root: Path, pre: Preprocessing) -> None:
    """One 422 for every source whose file disagrees with its declared size, or whose tiles would be
    smaller than the resize target (the model input): nothing is generated from a request that fails."""
    errors: list[FieldError] = []
    smallest: tuple[int, int, str] | None = None
    for source in items:
        try:
            width, height = probe(root / source.path)
        except UNREADABLE as exc:  # the reason in fixed words: PIL's message names the server path
            errors.append(
                FieldError(f"images.{source.path}", f"is not a readable image: {why_unreadable(exc)}")
            )
            continue
        if (width, height) != (source.width, source.height):
            errors.append(
                FieldError(
                    f"images.{source.path}",
                    f"declared {source.width}x{source.height}, but the file is {width}x{height}",
                )
            )
        if smallest is None or width * height < smallest[0] * smallest[1]:
            smallest = (width, height, source.path)
    errors = errors[:_LISTED] + (
        [FieldError("images", f"and {len(errors) - _LISTED} more")] if len(errors) > _LISTED else []
    )
    if smallest is not None and (problem := tile_problem(*smallest, pre)):
        errors.append(FieldError("preprocessing.tile", problem))
    if errors:
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors[:3])
        raise AppError(422, ErrorCode.VALIDATION_ERROR, detail, errors)


def tile_problem(width: int, height: int, name: str, pre: Preprocessing) -> str | None:
    """Why `pre`'s tiles of an image this size would be smaller than its resize target (the model
    input), or None."""
    if not (pre.tile and pre.resize):
        return None
    w, h = (int(v) for v in pre.resize.split("x"))
    for _, window, _, _ in windows(width, height, pre.model_copy(update={"resize": None})):
        tw, th = int(window.x1 - window.x0), int(window.y1 - window.y0)
        if tw < w or th < h:
            return (
                f"{pre.tile} tiles of {name} ({width}x{height}) are {tw}x{th}, "
                f"smaller than the {pre.resize} input: use fewer tiles or a smaller resize"
            )
    return None


@dataclass
class Generated:
    """What a freeze made: every output (bytes dropped once stored) and the files it created."""

    outputs: list[Output]
    created: list[Path] = field(default_factory=list)


def key_of(output: Output) -> str:
    """The output's path under the dataset folder: by content, then by name."""
    return f"{GENERATED}/{output.sha256[:2]}/{output.sha256}/{output.file_name}"


def generate(
    items: list[Source], renderer: Renderer, dataset_dir: Path, made: Generated, threads: int | None = None
) -> None:
    """Render every source (a thread per core: OpenCV releases the GIL) and store each output.

    `made` is filled as files are written, so a caller whose freeze fails knows what to remove."""

    def one(source: Source) -> list[Output]:
        outputs = renderer.render(source)
        for output in outputs:
            target = dataset_dir / key_of(output)
            if _write_new(target, output.data):
                made.created.append(target)  # list.append is atomic under the GIL
            output.data = b""
        return outputs

    with _one_opencv_thread(), ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        made.outputs = [o for outputs in pool.map(one, items) for o in outputs]


_opencv = threading.Lock()
_opencv_users = 0
_opencv_threads = 0


@contextmanager
def _one_opencv_thread() -> Iterator[None]:
    """OpenCV's own thread pool off while freezes run: they already keep every core busy with one image
    per thread, and both pools at once oversubscribe the cores (600 outputs on 2 cores: 8.1 s -> 5.8 s).
    Process-wide, so it is counted: the last freeze to finish restores OpenCV's setting."""
    global _opencv_users, _opencv_threads
    cv2 = opencv()
    with _opencv:
        if _opencv_users == 0:
            _opencv_threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _opencv_users += 1
    try:
        yield
    finally:
        with _opencv:
            _opencv_users -= 1
            if _opencv_users == 0:
                cv2.setNumThreads(_opencv_threads)


def _write_new(target: Path, data: bytes) -> bool:
    """Write unless the file exists (same name, same bytes); readers never see a partial file."""
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return True


def rebuild(
    selection: Selection, outputs: list[Output], path_of: Callable[[Output], str]
) -> tuple[Selection, dict[str, str], dict[str, tuple[str, str]], dict[str, dict[str, Any]]]:
    """The selection, hashes, placement and lineage of the outputs, for manifest.freeze."""
    ordered = sorted(outputs, key=lambda o: (o.split, o.file_name))
    tasks: dict[TaskType, TaskAnnotations] = {}
    for task, source in selection.tasks.items():
        images = [
            DiceImage(n, o.file_name, o.width, o.height, o.split, path_of(o), o.tasks[task])
            for n, o in enumerate(ordered, 1)
            if task in o.tasks
        ]
        tasks[task] = TaskAnnotations(task, source.file, source.classes, images, source.keypoints)
    paths = sorted({path_of(o) for o in ordered})
    hashes = {path_of(o): o.sha256 for o in ordered}
    placed = {path_of(o): (o.split, o.file_name) for o in ordered}
    lineage = {path_of(o): o.lineage for o in ordered}
    return Selection(tasks, paths), hashes, placed, lineage


def planned(selection: Selection, renderer: Renderer, items: list[Source]) -> Selection:
    """The selection a freeze would make, from annotations alone (no pixels read): for the preview."""
    outputs = [o for source in items for o in renderer.plan(source)]
    return rebuild(selection, outputs, lambda o: f"{o.split}/{o.file_name}")[0]
