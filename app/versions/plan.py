"""Everything a version request decides before anything is written: the images kept, their hashes and
splits, and (when it preprocesses or augments) the checked sources and the renderer that makes its images.
Freezing and the preview both start here, so the preview shows what a freeze would make."""

from dataclasses import dataclass
from pathlib import Path

from app.core.errors import invalid
from app.datasets.dice import load_dice
from app.datasets.types import TaskType
from app.versions import derive, manifest, schemas
from app.versions.render import Renderer, Source


@dataclass
class Plan:
    selection: manifest.Selection
    hashes: dict[str, str]
    ratios: dict[str, float] | None
    placed: dict[str, tuple[str, str]]
    items: list[Source]  # empty when the version keeps the source images as they are
    renderer: Renderer | None


def plan(source_root: Path, body: schemas.VersionCreate) -> Plan:
    """Filter, hash and place the images; 400 when none is left, 422 for images that cannot be made."""
    filters = manifest.Filters(
        tuple(body.filters.classes) if body.filters.classes else None,
        body.filters.min_confidence,
        body.filters.verified_only,
    )
    selection = manifest.select(load_dice(source_root), filters)
    if not selection.paths:
        raise invalid("filters", "no image matches the filters", status=400)
    hashes = manifest.hash_files(source_root, selection.paths)
    ratios = body.splits.model_dump() if body.splits else None
    placed = manifest.placement(selection, hashes, ratios, body.split_seed)
    if not derive.active(body.preprocessing, body.augmentation):
        return Plan(selection, hashes, ratios, placed, [], None)
    items = derive.sources(selection, hashes, placed)
    derive.check(items, source_root, body.preprocessing)
    pose = selection.tasks.get(TaskType.POSE)
    flip_idx = pose.keypoints.flip_idx if pose is not None and pose.keypoints is not None else None
    renderer = Renderer(source_root, body.preprocessing, body.augmentation, flip_idx)
    return Plan(selection, hashes, ratios, placed, items, renderer)
