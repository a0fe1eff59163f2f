"""What an Ultralytics `.pt` holds, read without torch and without running any of its code.

A `.pt` is a ZIP (torch.save) whose `data.pkl` pickles the checkpoint dict. Unpickling normally
imports and calls the classes it names, which is how a malicious pickle runs code; here every class
the pickle names becomes an inert stand-in that only records its arguments and state, so the web
process learns the model class, task, class names and architecture from the file and nothing runs.
A worker then loads the file for real (workers/ultralytics/weights.py) before it is `ready`.
"""

import io
import pickle
import zipfile
from dataclasses import dataclass
from typing import IO, Any

# Ultralytics' model classes (ultralytics.nn.tasks) and the platform's task names.
MODEL_TASKS = {
    "DetectionModel": "detection",
    "SegmentationModel": "segmentation",
    "PoseModel": "pose",
    "ClassificationModel": "classification",
}
MAX_PICKLE_BYTES = 64 * 1024 * 1024  # the tensors live beside data.pkl; the pickle itself is small


class NotAModel(ValueError):
    """The file is not an Ultralytics checkpoint of a known task; the message says why."""


@dataclass(frozen=True)
class CheckpointInfo:
    task_type: str
    architecture: str
    class_names: list[str]
    ultralytics_version: str | None
    has_optimizer: bool


class _Inert:
    """Stands in for any class a pickle names: keeps what the pickle gives it, does nothing else."""

    qualname = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        return type(name, (_Inert,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> None:
        return None  # tensor storages: their bytes are not needed to describe the model


def _data_pickle(file: IO[bytes]) -> bytes:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise NotAModel("not a PyTorch checkpoint (torch.save writes a ZIP archive)") from exc
    with archive:
        found = [i for i in archive.infolist() if i.filename.endswith("data.pkl")]
        if len(found) != 1:
            raise NotAModel("a ZIP archive, but not a PyTorch checkpoint (no data.pkl)")
        if found[0].file_size > MAX_PICKLE_BYTES:
            raise NotAModel("its data.pkl is implausibly large for a model")
        try:
            return archive.read(found[0])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise NotAModel(f"the archive is damaged ({exc.__class__.__name__})") from exc


def inspect_checkpoint(file: IO[bytes]) -> CheckpointInfo:
    """Describe an Ultralytics checkpoint, or raise NotAModel saying what is wrong with it."""
    data = _data_pickle(file)
    try:
        checkpoint = _InertUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # any malformed pickle: nothing ran, so nothing else can have happened
        raise NotAModel(f"its data.pkl is not a readable pickle ({exc.__class__.__name__})") from exc
    if not isinstance(checkpoint, dict):
        raise NotAModel("it holds no checkpoint dictionary")
    model = checkpoint.get("ema") or checkpoint.get("model")
    if not isinstance(model, _Inert):
        raise NotAModel("it holds no model (no 'model' or 'ema' entry)")
    module, _, cls = model.qualname.rpartition(".")
    if module != "ultralytics.nn.tasks" or cls not in MODEL_TASKS:
        known = ", ".join(sorted(MODEL_TASKS))
        raise NotAModel(f"its model is a {model.qualname}, not an Ultralytics model ({known})")
    state = model.state if isinstance(model.state, dict) else {}
    return CheckpointInfo(
        task_type=MODEL_TASKS[cls],
        architecture=_architecture(state.get("yaml")),
        class_names=_names(state.get("names")),
        ultralytics_version=_text(checkpoint.get("version")),
        has_optimizer=checkpoint.get("optimizer") is not None,
    )


def _architecture(spec: Any) -> str:
    """`yolo11n` from the model YAML it was built from; `custom` when the file does not say."""
    if isinstance(spec, dict) and isinstance(spec.get("yaml_file"), str):
        stem = spec["yaml_file"].rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix(".yml")
        scale = spec.get("scale")
        # Ultralytics files `yolo11n.yaml` as `yolo11.yaml` with scale `n` in some versions.
        if isinstance(scale, str) and not stem.endswith(scale):
            stem += scale
        return stem[:100] or "custom"
    return "custom"


def _names(names: Any) -> list[str]:
    if isinstance(names, dict):
        ordered = sorted(names, key=lambda k: (0, k, "") if isinstance(k, int) else (1, 0, str(k)))
        return [str(names[k]) for k in ordered]
    if isinstance(names, list | tuple):
        return [str(n) for n in names]
    return []


def _text(value: Any) -> str | None:
    return value[:40] if isinstance(value, str) else None
