"""The built-in Ultralytics trainer: a child process of the worker, reporting through TrainerSDK.

Run as `python -m workers.ultralytics.trainer`; everything it knows about its job comes from
`sdk.context` (docs/trainer-contract.md), which the worker prepared (workers/inputs.py).
"""

import csv
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from app.training.data_yaml import write_resolved
from trainyard_sdk import Phase, TrainerSDK
from workers.ultralytics.metrics import split_metrics
from workers.ultralytics.offline import prepare_offline

ULTRALYTICS_TASK = {
    "detection": "detect",
    "segmentation": "segment",
    "classification": "classify",
    "pose": "pose",
}
ARTIFACTS = ("results.csv", "args.yaml")


class StopRequested(Exception):
    """The worker asked the trainer to stop (SIGUSR1): end after the current step, keep last.pt."""


class Reporter:
    """Ultralytics callbacks -> SDK reports. Checkpoints are snapshotted, since Ultralytics rewrites
    last.pt in place every epoch and the worker must never copy a half-written file."""

    def __init__(self, sdk: TrainerSDK, snapshots: Path) -> None:
        self.sdk = sdk
        self.snapshots = snapshots
        self.started = time.monotonic()
        self.reported_epochs: set[int] = set()
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, float] = {}
        self.final_metrics: dict[str, float] = {}
        self.batch = 0
        self.stop = threading.Event()
        self.plots_asked: list[Callable[[], None]] = []
        self.plotting = threading.Thread()

    def attach(self, model: Any) -> None:
        model.add_callback("on_pretrain_routine_start", self.on_pretrain_routine_start)
        model.add_callback("on_train_start", self.on_train_start)
        model.add_callback("on_train_epoch_start", self.on_train_epoch_start)
        model.add_callback("on_train_batch_end", self.on_train_batch_end)
        model.add_callback("on_train_epoch_end", self.on_train_epoch_end)
        model.add_callback("on_model_save", self.on_model_save)
        model.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)

    def on_pretrain_routine_start(self, trainer: Any) -> None:
        self.sdk.report_progress(0, trainer.epochs, phase=Phase.SETUP)
        # The labels plot (seconds of matplotlib) that the setup asks for is drawn beside the first epoch's
        # batches, from the end of the first one on, so it holds up neither the setup nor the first step;
        # it is done before that epoch's validation, the next thing to plot.
        plot = trainer.plot_training_labels
        trainer.plot_training_labels = lambda: self.plots_asked.append(plot)

    def _plot_beside_training(self) -> None:
        while self.plots_asked:
            self.plotting = threading.Thread(target=self.plots_asked.pop(), name="labels-plot", daemon=True)
            self.plotting.start()

    def _plots_done(self) -> None:
        if self.plotting.is_alive():
            self.plotting.join()

    def on_train_start(self, trainer: Any) -> None:
        self.started = time.monotonic()
        self.sdk.log_info(f"training {trainer.epochs} epochs from epoch {trainer.start_epoch + 1}")

    def on_train_epoch_start(self, trainer: Any) -> None:
        self.batch = 0

    def on_train_batch_end(self, trainer: Any) -> None:
        # A stop lands between two steps; the last finished epoch's last.pt (with its optimizer
        # state, since Ultralytics' own trainer.stop would strip it) is what a resume starts from.
        if self.stop.is_set():
            raise StopRequested
        self.batch += 1
        batches = len(trainer.train_loader)
        eta = self._eta(trainer, trainer.epoch + min(self.batch / batches, 1.0))
        self.sdk.report_progress(
            trainer.epoch + 1, trainer.epochs, batch=self.batch, batches=batches, eta_s=eta
        )
        self._plot_beside_training()

    def on_train_epoch_end(self, trainer: Any) -> None:
        self._plots_done()
        batches = len(trainer.train_loader)
        eta = self._eta(trainer, trainer.epoch + 1)
        self.sdk.report_progress(
            trainer.epoch + 1, trainer.epochs, batch=batches, batches=batches, eta_s=eta, phase=Phase.VAL
        )

    def on_model_save(self, trainer: Any) -> None:
        epoch = trainer.epoch + 1
        _train, val = split_metrics(
            trainer.metrics or {}, trainer.label_loss_items(trainer.tloss, prefix="train")
        )
        self._snapshot("last", trainer.last, epoch, val)
        if trainer.best_fitness == trainer.fitness and trainer.best.exists():
            self.best_epoch, self.best_metrics = epoch, val
            self._snapshot("best", trainer.best, epoch, val)

    def on_fit_epoch_end(self, trainer: Any) -> None:
        epoch = trainer.epoch + 1
        train, val = split_metrics(
            trainer.metrics or {}, trainer.label_loss_items(trainer.tloss, prefix="train")
        )
        train.update({k.replace("/", "_"): float(v) for k, v in (trainer.lr or {}).items()})
        if epoch > trainer.epochs or epoch in self.reported_epochs:
            # Ultralytics calls this once more after the last epoch, validating best.pt.
            self.final_metrics = val
            return
        self.reported_epochs.add(epoch)
        self.final_metrics = val
        last = trainer.stop or epoch >= trainer.epochs
        self.sdk.report_metrics(epoch, train, val)
        # An epoch's end (no batch): the job counts it done. After the last, the final validation.
        self.sdk.report_progress(
            epoch,
            trainer.epochs,
            eta_s=None if last else self._eta(trainer, epoch),
            phase=Phase.FINAL if last else Phase.TRAIN,
        )
        if self.stop.is_set() and not last:
            raise StopRequested

    def _eta(self, trainer: Any, done: float) -> float | None:
        """Seconds left, from the pace so far (`done`: epochs done, fractional within an epoch)."""
        trained = done - trainer.start_epoch
        if trained <= 0:
            return None
        left = trainer.epochs - done
        return round(max(left, 0.0) * (time.monotonic() - self.started) / trained, 1)

    def _snapshot(self, kind: str, source: Path, epoch: int, metrics: dict[str, float]) -> None:
        target = self.snapshots / f"{kind}-epoch{epoch}.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        self.sdk.report_checkpoint(kind, str(target), epoch, metrics)

    def results(self, epochs_completed: int) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "final_metrics": self.final_metrics,
            "training_time_seconds": round(time.monotonic() - self.started, 3),
            "epochs_completed": epochs_completed,
        }


def classify_error(exc: BaseException) -> tuple[str, str]:
    """Map a failure to a job failure code (app/core/errors.py) with a message a user can act on."""
    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return "OOM", f"{text} (reduce batch or imgsz)"
    if isinstance(exc, FileNotFoundError) or ("dataset" in text.lower() and "not found" in text.lower()):
        return "DATASET_NOT_FOUND", text
    if isinstance(exc, SyntaxError | KeyError | TypeError) or "argument" in text.lower():
        return "INVALID_CONFIG", text
    if isinstance(exc, ConnectionError | TimeoutError | BrokenPipeError):
        return "TRANSIENT_ERROR", text
    return "TRAINER_CRASHED", text


def train(sdk: TrainerSDK) -> None:
    context = sdk.context
    assert context.run_dir is not None and context.dataset_path is not None, "a worker prepares both"
    run_dir = context.run_dir
    # Ultralytics' own settings folder (the worker sets it; not part of the job's context).
    prepare_offline(Path(os.environ.get("YOLO_CONFIG_DIR") or run_dir / "ultralytics"))
    from ultralytics import YOLO

    task = ULTRALYTICS_TASK[context.task_type]
    # A relative `path:` in data.yaml means the data.yaml's folder (docs/datasets.md), not Ultralytics' cwd.
    dataset = context.dataset_path
    data = str(dataset if task == "classify" else write_resolved(dataset, run_dir / "dataset" / "data.yaml"))
    reporter = Reporter(sdk, run_dir / "snapshots")
    signal.signal(signal.SIGUSR1, lambda *_: reporter.stop.set())
    resume_from = context.resume_from
    sdk.report_started(
        pid=os.getpid(),
        device=context.device,
        resumed_from=str(resume_from) if resume_from else None,
        model_source=context.model_source,
    )
    if resume_from:
        model = YOLO(str(resume_from), task=task)
        reporter.attach(model)
        # save_dir: the checkpoint remembers the old attempt's folder, possibly on another host.
        try:
            model.train(resume=True, data=data, device=context.device, save_dir=str(run_dir / "train"))
        except AssertionError as exc:
            if "nothing to resume" not in str(exc):
                raise
            # The previous attempt finished its last epoch but was lost before it said so.
            sdk.log_info("the checkpoint already covers every epoch; nothing left to train")
            results, artifacts = recovered_results(resume_from, run_dir / "recovered")
            sdk.report_completed(results, artifacts)
            return
    else:
        model = YOLO(context.model_source, task=task)
        reporter.attach(model)
        config = dict(context.config)
        config.update(data=data, device=context.device, project=str(run_dir), name="train", exist_ok=True)
        model.train(**config)
    trainer: Any = model.trainer
    save_dir = Path(trainer.save_dir)
    artifacts = {name: str(save_dir / name) for name in ARTIFACTS}
    results = reporter.results(trainer.epoch + 1)
    results["model_info"] = model_info(trainer)  # what the model registry records
    sdk.report_completed(results, artifacts)


def recovered_results(checkpoint: Path, folder: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """What a finished run would have reported, from its last checkpoint: the epochs done, the run's
    results.csv and args.yaml and the model's facts. Best and final metrics the API completes from
    what the earlier attempts recorded (app/training/results.py)."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    args: dict[str, Any] = dict(ckpt.get("train_args") or {})
    columns: dict[str, list[Any]] = dict(ckpt.get("train_results") or {})
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = {}
    if columns:
        with (folder / "results.csv").open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(columns)
            writer.writerows(zip(*columns.values(), strict=True))
        artifacts["results.csv"] = str(folder / "results.csv")
    if args:
        (folder / "args.yaml").write_text(yaml.safe_dump(args, sort_keys=False))
        artifacts["args.yaml"] = str(folder / "args.yaml")
    names = getattr(ckpt.get("ema") or ckpt.get("model"), "names", None)
    seconds = (columns.get("time") or [None])[-1]
    results = {
        "epochs_completed": int(ckpt.get("epoch", -1)) + 1 or None,
        "training_time_seconds": float(seconds) if seconds is not None else None,
        "model_info": _model_facts(names, args.get("imgsz")),
    }
    return results, artifacts


def model_info(trainer: Any) -> dict[str, Any]:
    """Class names, input size and the package versions the weights were trained with."""
    names = getattr(trainer.data, "get", lambda *_: None)("names") if trainer.data else None
    return _model_facts(names, trainer.args.imgsz)


def _model_facts(names: Any, imgsz: Any) -> dict[str, Any]:
    from importlib.metadata import version

    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names)]
    return {
        "class_names": list(names or []),
        "imgsz": int(imgsz) if isinstance(imgsz, int) else None,
        "package_versions": {name: version(name) for name in ("ultralytics", "torch")},
    }


def preload() -> None:
    """In a worker's spare trainer process (workers/trainer_host.py): import what every run imports,
    so a job's first seconds go to its own work. Nothing here touches a device or a job's files."""
    prepare_offline(Path(os.environ["YOLO_CONFIG_DIR"]))
    # Ultralytics' augmentations, label and metric plots, results.csv, the model summary's FLOPs, what
    # its validator imports (torchvision) and its seeding's deterministic mode (torch._inductor: seconds).
    import albumentations  # noqa: F401
    import matplotlib.backends.backend_agg
    import matplotlib.pyplot  # noqa: F401
    import polars  # noqa: F401
    import thop  # noqa: F401
    import torch._inductor  # noqa: F401
    import torchvision  # noqa: F401
    import ultralytics.data.build  # datasets and loaders
    import ultralytics.models.yolo  # every task's trainer and validator
    import ultralytics.utils.plotting  # noqa: F401
    from PIL import Image

    Image.init()  # every image format's plugin


def main() -> None:
    sdk = TrainerSDK.from_env()
    try:
        train(sdk)
    except StopRequested:
        sdk.report_stopped()
    except BaseException as exc:
        code, message = classify_error(exc)
        sdk.log_error(traceback.format_exc())
        sdk.report_failed(code, message)
        sdk.close()
        sys.exit(1)
    sdk.close()


if __name__ == "__main__":
    main()
