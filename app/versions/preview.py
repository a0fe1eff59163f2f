"""What a version request would make, without writing anything: counts per split and class, and a few
images with their transformed annotations (the version dialog's preview)."""

import base64

from app.core.db import Database
from app.versions import derive, manifest, schemas
from app.versions.plan import plan
from app.versions.render import Output, Source
from app.versions.service import locate

SAMPLES = 4
_MEDIA = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


def preview(db: Database, project_id: int, body: schemas.VersionCreate) -> schemas.VersionPreview:
    """Counts from the annotations alone (no pixel is read for them); samples rendered in memory."""
    planned = plan(locate(db, project_id, body.dataset_id).source, body)
    samples: list[Output] = []
    if planned.renderer is None:  # the version keeps the source images: nothing to render
        selection = manifest.Selection(
            {t: manifest.with_splits(a, planned.placed) for t, a in planned.selection.tasks.items()},
            planned.selection.paths,
        )
    else:
        selection = derive.planned(planned.selection, planned.renderer, planned.items)
        samples = planned.renderer.render(_showcase(planned.items, body))[:SAMPLES]
    split_counts, class_counts = manifest.counts(selection)
    return schemas.VersionPreview(
        image_count=len(selection.paths),
        annotation_count=selection.annotation_count,
        split_counts=split_counts,
        class_counts=class_counts,
        estimated=_may_drop_objects(body.augmentation),
        samples=[_sample(o) for o in samples],
    )


def _may_drop_objects(aug: schemas.Augmentation) -> bool:
    """Whether a freeze could lose objects the preview counts: only a warp or a cutout moves or hides one."""
    return aug.active and bool(aug.rotation or aug.scale or aug.cutout)


def _showcase(items: list[Source], body: schemas.VersionCreate) -> Source:
    """The first training image when augmenting (only training images are augmented), else the first."""
    if body.augmentation.active:
        return next((s for s in items if s.split == "train"), items[0])
    return items[0]


def _sample(output: Output) -> schemas.PreviewSample:
    return schemas.PreviewSample(
        file_name=output.file_name,
        split=output.split,
        width=output.width,
        height=output.height,
        media_type=_MEDIA.get(output.ext.lower(), "image/png"),
        data=base64.b64encode(output.data).decode(),
        annotations={
            t.value: [manifest.annotation_json(a) for a in anns] for t, anns in sorted(output.tasks.items())
        },
        lineage=output.lineage,
    )
