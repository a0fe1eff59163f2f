"""Ultralytics on the inference side: decode images, load weights, predict, and turn results into JSON."""

import hashlib
import io
from pathlib import Path
from typing import Any

from PIL import Image

from app.core.errors import ErrorCode
from app.core.storage import Storage
from app.inference.images import UNREADABLE, unreadable
from workers.ultralytics.trainer import ULTRALYTICS_TASK


class InferenceError(Exception):
    """A request the worker refuses (bad image, unloadable model); it goes back as problem+json."""

    def __init__(self, status: int, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail

    def reply(self) -> dict[str, Any]:
        return {"ok": False, "status": self.status, "code": self.code, "detail": self.detail}


def decode(name: str, data: bytes, max_pixels: int) -> Image.Image:
    """A fully decoded RGB image; a truncated or non-image file is a 422, never a worker crash."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise InferenceError(
                    413, ErrorCode.IMAGE_TOO_LARGE, f"{name}: {width}x{height} exceeds {max_pixels} pixels"
                )
            probe.load()
            return probe.convert("RGB")
    except InferenceError:
        raise
    except UNREADABLE as exc:
        raise InferenceError(422, ErrorCode.INVALID_IMAGE, unreadable(name, exc)) from exc


def weights_file(ref: dict[str, Any], storage: Storage, cache_dir: Path) -> Path:
    """The model's weights on local disk, fetched once per version."""
    digest = hashlib.sha1(str(ref["version"]).encode()).hexdigest()[:12]
    local = cache_dir / f"model-{ref['id']}-{digest}.pt"
    if not local.exists():
        if not storage.exists(ref["weights_key"]):
            raise InferenceError(409, ErrorCode.MODEL_NOT_READY, f"weights of model {ref['id']} are missing")
        storage.get_file(ref["weights_key"], local)
    return local


def read_model(ref: dict[str, Any], storage: Storage, cache_dir: Path) -> Any:
    """The model from its weights, in host memory (nothing on the GPU yet)."""
    from ultralytics import YOLO

    path = weights_file(ref, storage, cache_dir)
    try:
        return YOLO(str(path), task=ULTRALYTICS_TASK[ref["task"]])
    except Exception as exc:
        raise _unloadable(ref, exc) from exc


def warm_up(model: Any, ref: dict[str, Any], device: str) -> int:
    """One predict on a blank image, on the device: a model that cannot predict never enters the
    cache. Returns the bytes its weights take."""
    try:
        size = int(ref.get("imgsz") or 64)
        model.predict(Image.new("RGB", (size, size)), imgsz=size, device=device, verbose=False)
    except Exception as exc:
        raise _unloadable(ref, exc) from exc
    torch_model: Any = model.model
    return int(sum(t.numel() * t.element_size() for t in [*torch_model.parameters(), *torch_model.buffers()]))


def _unloadable(ref: dict[str, Any], exc: Exception) -> InferenceError:
    return InferenceError(
        422, ErrorCode.MODEL_NOT_READY, f"model {ref['id']} does not load: {type(exc).__name__}: {exc}"
    )


def serialize(result: Any, task: str, top_k: int) -> dict[str, Any]:
    """One image's result: boxes (+ polygons, keypoints) or top-k classes, and Ultralytics' timing."""
    names = result.names
    out: dict[str, Any] = {"width": int(result.orig_shape[1]), "height": int(result.orig_shape[0])}
    if task == "classification":
        probs = result.probs
        order = probs.data.argsort(descending=True)[:top_k].tolist()
        out["top_k"] = [
            {"class_id": i, "class_name": names[i], "confidence": round(float(probs.data[i]), 5)}
            for i in order
        ]
    else:
        boxes = result.boxes
        xyxy, conf, cls = boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.int().tolist()
        polygons = result.masks.xy if task == "segmentation" and result.masks is not None else None
        keypoints = result.keypoints if task == "pose" and result.keypoints is not None else None
        detections = []
        for i, box in enumerate(xyxy):
            item: dict[str, Any] = {
                "box": [round(v, 2) for v in box],
                "confidence": round(conf[i], 5),
                "class_id": cls[i],
                "class_name": names[cls[i]],
            }
            if polygons is not None:
                item["polygon"] = [[round(x, 2), round(y, 2)] for x, y in polygons[i].tolist()]
            if keypoints is not None:
                xy = keypoints.xy[i].tolist()
                kconf = keypoints.conf[i].tolist() if keypoints.conf is not None else [None] * len(xy)
                item["keypoints"] = [
                    [round(x, 2), round(y, 2), c] for (x, y), c in zip(xy, kconf, strict=True)
                ]
            detections.append(item)
        out["detections"] = detections
    out["speed_ms"] = {k: round(v, 3) for k, v in (result.speed or {}).items() if v is not None}
    return out
