"""Ultralytics on weight files: load and check one, strip its optimizer state, export it and check the
export against the `.pt` by running both on the same image. Runs on a worker (torch), on the CPU."""

import shutil
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from workers.ultralytics.trainer import ULTRALYTICS_TASK

MAX_BOX_DIFF_PX = 1.0  # an export agrees with the .pt when every box is this close
CHECK_CONF = 0.001  # low, so even a briefly trained model yields boxes to compare
CHECK_MAX_DET = 50


class WeightsProblem(Exception):
    """The file does not load, predict or export as it should; the message says why."""


def load_and_check(path: Path, task: str) -> list[str]:
    """Load the weights as a model of `task` and predict once on a blank image; its class names."""
    model = _load(path)
    if model.task != ULTRALYTICS_TASK[task]:
        raise WeightsProblem(f"is a {model.task} model, not {ULTRALYTICS_TASK[task]}")
    try:
        model.predict(Image.new("RGB", (64, 64)), imgsz=64, device="cpu", verbose=False)
    except Exception as exc:
        raise WeightsProblem(f"does not predict: {type(exc).__name__}: {exc}") from exc
    return [str(model.names[k]) for k in sorted(model.names)]


def _load(path: Path, task: str | None = None) -> Any:
    from ultralytics import YOLO

    try:
        return YOLO(str(path), task=ULTRALYTICS_TASK[task] if task else None)
    except Exception as exc:
        # The reason goes to API clients: no worker paths in it.
        reason = str(exc).replace(str(path), "the file")
        raise WeightsProblem(f"does not load: {type(exc).__name__}: {reason}") from exc


def strip(source: Path, target: Path) -> None:
    """`target`: the weights of `source` without optimizer state (FP16 EMA model; what inference needs)."""
    from ultralytics.utils.torch_utils import strip_optimizer

    if not strip_optimizer(source, str(target)):
        raise WeightsProblem("is not an Ultralytics checkpoint; nothing to strip")


@dataclass
class Export:
    path: Path
    details: dict[str, Any] = field(default_factory=dict)


def export(weights: Path, fmt: str, task: str, imgsz: int, workdir: Path) -> Export:
    """Export with Ultralytics' exporter, then run the export and the `.pt` on the same image: same number
    of boxes, each within MAX_BOX_DIFF_PX (classification: same top class). WeightsProblem otherwise."""
    from ultralytics import YOLO

    source = workdir / "model.pt"  # the exporter writes beside its input
    shutil.copyfile(weights, source)
    model = _load(source, task)
    try:
        exported = Path(model.export(format=fmt, imgsz=imgsz, device="cpu", verbose=False))
    except Exception as exc:
        raise WeightsProblem(f"the {fmt} export failed: {type(exc).__name__}: {exc}") from exc
    image = sample_image(imgsz)
    expected = _predict(YOLO(str(source), task=ULTRALYTICS_TASK[task]), image, imgsz)
    actual = _predict(YOLO(str(exported), task=ULTRALYTICS_TASK[task]), image, imgsz)
    check = compare(expected, actual)
    return Export(exported, {"versions": _versions(fmt), **_opset(exported, fmt), "check": check})


def sample_image(size: int) -> Image.Image:
    """Shapes on a grey field: something for a detector to find, the same on every worker."""
    image = Image.new("RGB", (size * 2, size * 2), (70, 70, 70))
    draw = ImageDraw.Draw(image)
    draw.rectangle([size // 5, size // 4, size, size], fill=(230, 20, 20))
    draw.rectangle([size, size, size * 2 - size // 6, size * 2 - size // 5], fill=(20, 20, 230))
    draw.ellipse(
        [size // 8, size + size // 8, size // 2 + size // 8, size * 2 - size // 8], fill=(20, 200, 20)
    )
    return image


def _predict(model: Any, image: Image.Image, imgsz: int) -> list[tuple[int, list[float]]]:
    result = model.predict(
        image, imgsz=imgsz, conf=CHECK_CONF, max_det=CHECK_MAX_DET, device="cpu", verbose=False
    )[0]
    if result.probs is not None:  # classification: the top class stands for the "box"
        return [(int(result.probs.top1), [])]
    return [
        (int(c), [float(v) for v in box]) for c, box in zip(result.boxes.cls, result.boxes.xyxy, strict=True)
    ]


def compare(expected: list[tuple[int, list[float]]], actual: list[tuple[int, list[float]]]) -> dict[str, Any]:
    """Each expected box matched to an unused exported box of its class; the worst coordinate difference."""
    if len(expected) != len(actual):
        raise WeightsProblem(f"the export finds {len(actual)} boxes where the .pt finds {len(expected)}")
    unused = list(actual)
    worst = 0.0
    for cls, box in expected:
        candidates = [
            (max((abs(a - b) for a, b in zip(box, other, strict=True)), default=0.0), i)
            for i, (c, other) in enumerate(unused)
            if c == cls
        ]
        if not candidates:
            raise WeightsProblem(f"the export does not find the .pt's class {cls} box {box}")
        diff, index = min(candidates)
        if diff > MAX_BOX_DIFF_PX:
            raise WeightsProblem(f"a box differs by {diff:.2f} px from the .pt's (at most {MAX_BOX_DIFF_PX})")
        worst = max(worst, diff)
        unused.pop(index)
    return {"boxes": len(expected), "max_box_diff_px": round(worst, 4), "conf": CHECK_CONF}


def _versions(fmt: str) -> dict[str, str]:
    names = ["ultralytics", "torch"] + (["onnx", "onnxruntime"] if fmt == "onnx" else [])
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _opset(path: Path, fmt: str) -> dict[str, Any]:
    if fmt != "onnx":
        return {}
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return {"opset": max(op.version for op in graph.opset_import if op.domain in {"", "ai.onnx"})}
