"""Augmented images equal what Albumentations makes when called directly with the parameters
docs/versions.md gives and the seed each image's lineage records; only training images are augmented;
pose keypoints swap sides on a horizontal flip; the same request renders the same bytes."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.versions.augment import albumentations
from tests.versions.factories import (
    CENTRAL_BOX,
    CENTRAL_KEYPOINTS,
    CENTRAL_POLYGON,
    decoded,
    four_tasks,
    labels,
    pixels,
    render,
)

A = albumentations()  # the library itself (imported without its torch helpers)

FLIP_IDX = [0, 2, 1]  # nose, left_eye, right_eye


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return four_tasks(tmp_path_factory.mktemp("a") / "source")


def reference(transform: Any, seed: int) -> dict[str, Any]:
    """b.png's central objects through Albumentations itself: the box as a COCO box, the polygon's and the
    keypoints' points as pixel-index keypoints (half a pixel up-left of DICE's continuous coordinates)."""
    compose = A.Compose(
        [transform],
        bbox_params=A.BboxParams(
            format="coco", label_fields=["box_ids"], clip=True, filter_invalid_bboxes=True
        ),
        keypoint_params=A.KeypointParams(format="xy", label_fields=["point_ids"], remove_invisible=False),
        seed=seed,
    )
    points = [CENTRAL_POLYGON[k : k + 2] for k in range(0, 8, 2)] + [
        CENTRAL_KEYPOINTS[k : k + 2] for k in (0, 3, 6)
    ]
    out = compose(
        image=pixels(2),
        bboxes=np.array([CENTRAL_BOX], dtype=np.float64),
        box_ids=[0],
        keypoints=np.array(points, dtype=np.float64) - 0.5,
        point_ids=list(range(len(points))),
    )
    moved = [(float(x) + 0.5, float(y) + 0.5) for x, y in out["keypoints"]]
    return {"image": out["image"], "box": [float(v) for v in out["bboxes"][0]], "points": moved}


GEOMETRIC = {
    "horizontal_flip": ({"horizontal_flip": True}, A.HorizontalFlip(p=0.5)),
    "vertical_flip": ({"vertical_flip": True}, A.VerticalFlip(p=0.5)),
    "rotation": (
        {"rotation": 15},
        A.Affine(rotate=(-15, 15), scale=(1, 1), keep_ratio=True, border_mode=0, fill=114, p=1.0),
    ),
    "scale": (
        {"scale": 0.2},
        A.Affine(rotate=(0, 0), scale=(0.8, 1.2), keep_ratio=True, border_mode=0, fill=114, p=1.0),
    ),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_geometric_transforms_match_albumentations_for_every_task(root: Path, name: str) -> None:
    settings, transform = GEOMETRIC[name]
    outputs = render(root, augmentation={"multiplier": 5, "seed": 11, **settings})
    variants = [
        o
        for o in outputs
        if o.lineage["source"]["path"] == "images/train/b.png" and o.lineage["augmentation"]
    ]
    assert [o.file_name for o in variants] == [f"b_aug{k}.png" for k in (1, 2, 3, 4)]
    assert len({o.sha256 for o in variants}) > 1  # the seeds differ per variant
    for out in variants:
        ref = reference(transform, out.lineage["augmentation"]["seed"])
        assert np.array_equal(decoded(out), ref["image"])
        assert labels(out, "detection")[0]["bbox"] == pytest.approx(ref["box"], abs=1e-5)
        polygon = labels(out, "segmentation")[0]["segmentation"][0]
        assert polygon == pytest.approx([v for p in ref["points"][:4] for v in p], abs=1e-5)
        keypoints = labels(out, "pose")[0]["keypoints"]
        expected = [(*ref["points"][4 + j], 2) for j in range(3)]
        if "HorizontalFlip" in out.lineage["augmentation"]["applied"]:
            expected = [expected[FLIP_IDX[j]] for j in range(3)]  # left eye becomes right eye
        assert keypoints == pytest.approx([v for kp in expected for v in kp], abs=1e-5)
        assert labels(out, "pose")[0]["bbox"] == pytest.approx(ref["box"], abs=1e-5)
        assert labels(out, "classification") == [{"id": 41, "class_id": 1}]
    if name == "horizontal_flip":
        applied = [o.lineage["augmentation"]["applied"] for o in variants]
        assert ["HorizontalFlip"] in applied and [] in applied  # both branches were checked


def test_photometric_transforms_match_albumentations_and_leave_labels(root: Path) -> None:
    settings = {"brightness": 0.3, "contrast": 0.2, "hue": 10, "saturation": 20, "blur": 5, "noise": 0.1}
    outputs = render(root, augmentation={"multiplier": 3, "seed": 5, **settings})
    pipeline = [
        A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.2, p=1.0),
        A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=0, p=1.0),
        A.GaussianBlur(blur_limit=(3, 5), p=0.5),
        A.GaussNoise(std_range=(0.0, 0.1), p=0.5),
    ]
    for out in (o for o in outputs if o.file_name.startswith("b_aug")):
        compose = A.Compose(pipeline, seed=out.lineage["augmentation"]["seed"])
        assert np.array_equal(decoded(out), compose(image=pixels(2))["image"])
        assert labels(out, "detection")[0]["bbox"] == pytest.approx(CENTRAL_BOX, abs=1e-5)


def test_only_training_images_are_augmented_and_keypoints_leaving_become_unlabelled(root: Path) -> None:
    outputs = render(root, augmentation={"multiplier": 3, "scale": 0.9, "seed": 6})
    names = sorted(o.file_name for o in outputs)
    assert names == ["a.png", "a_aug1.png", "a_aug2.png", "b.png", "b_aug1.png", "b_aug2.png", "c.png"]
    zoomed = [kp for o in outputs if o.lineage["augmentation"] for kp in labels(o, "pose")]
    # A 1.9x zoom pushes some keypoints out of the image: they are (0, 0, 0), never clamped to the edge.
    points = [kp["keypoints"][k : k + 3] for kp in zoomed for k in (0, 3, 6)]
    assert [0, 0, 0] in points
    assert all(p == [0, 0, 0] or (0 <= p[0] <= 64 and 0 <= p[1] <= 48 and p[2] > 0) for p in points)


def test_the_same_request_renders_the_same_bytes(root: Path) -> None:
    body = {"preprocessing": {"tile": "2x1"}, "augmentation": {"multiplier": 3, "rotation": 20, "cutout": 2}}
    first, second = render(root, **body), render(root, **body)
    assert [(o.file_name, o.sha256) for o in first] == [(o.file_name, o.sha256) for o in second]
    other = render(root, **{**body, "augmentation": {**body["augmentation"], "seed": 1}})
    assert [o.sha256 for o in other] != [o.sha256 for o in first]


def test_generation_runs_opencv_single_threaded_and_restores_it(root: Path, tmp_path: Path) -> None:
    import cv2

    from app.versions import derive, schemas
    from app.versions.plan import plan

    planned = plan(root, schemas.VersionCreate(augmentation={"multiplier": 2, "rotation": 5}))
    assert planned.renderer is not None
    seen: list[int] = []
    render = planned.renderer.render

    def spying(source: Any) -> Any:
        seen.append(cv2.getNumThreads())
        return render(source)

    planned.renderer.render = spying  # type: ignore[method-assign]
    cv2.setNumThreads(2)
    made = derive.Generated([])
    derive.generate(planned.items, planned.renderer, tmp_path, made)
    assert seen == [1, 1, 1] and cv2.getNumThreads() == 2
    assert len(made.outputs) == 5 and len(made.created) == 5
