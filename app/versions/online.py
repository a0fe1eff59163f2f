"""A job's augmentation in one view: the version's offline settings (images made at freeze time) beside
Ultralytics' on-line parameters from the job's config, and where the two do the same thing twice."""

from typing import Any

# Ultralytics' training-time augmentation parameters (app/configs/schema.py, "Augmentation").
ONLINE = (
    "hsv_h",
    "hsv_s",
    "hsv_v",
    "degrees",
    "translate",
    "scale",
    "shear",
    "perspective",
    "flipud",
    "fliplr",
    "bgr",
    "mosaic",
    "mixup",
    "cutmix",
    "copy_paste",
    "auto_augment",
    "erasing",
)
# offline setting -> the on-line parameters that repeat it
OVERLAPS = {
    "horizontal_flip": ("fliplr",),
    "vertical_flip": ("flipud",),
    "rotation": ("degrees",),
    "scale": ("scale",),
    "brightness": ("hsv_v",),
    "hue": ("hsv_h",),
    "saturation": ("hsv_s",),
    "cutout": ("erasing",),
}


def side_by_side(offline: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """{offline, online, overlaps}: what each stage applies, and the transforms both apply."""
    multiplier = offline.get("multiplier")
    active = isinstance(multiplier, int) and multiplier > 1  # rows frozen before offline augmentation: {}
    # Only the transforms in use (cutout_size has a default that means nothing without cutout).
    chosen = {
        k: v
        for k, v in offline.items()
        if k in ("multiplier", "seed") or (v and (k != "cutout_size" or offline.get("cutout")))
    }
    online = {k: config[k] for k in ONLINE if k in config}
    overlaps = [
        f"{setting} is applied offline and online ({key}={online[key]})"
        for setting, keys in OVERLAPS.items()
        if active and offline.get(setting)
        for key in keys
        if online.get(key)
    ]
    return {"offline": chosen if active else {}, "online": online, "overlaps": overlaps}
