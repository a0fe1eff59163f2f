"""The built-in Ultralytics trainer: a child process of the worker, reporting through TrainerSDK.

Run as `python -m workers.ultralytics.trainer` with the job in the environment (see workers/runner.py).
"""

import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from workers.sdk import TrainerSDK
from workers.ultralytics.metrics import split_metrics
from workers.ultralytics.offline import prepare_offline

ULTRALYTICS_TASK = {
    "detection": "detect",
    "segmentation": "segment",
    "classification": "classify",
    "pose": "pose",
}


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
        self.last_epoch = 0
        self.stop = threading.Event()
        self.faults = Faults.from_env()

    def attach(self, model: Any) -> None:
        model.add_callback("on_train_start", self.on_train_start)
        model.add_callback("on_train_batch_end", self.on_train_batch_end)
        model.add_callback("on_model_save", self.on_model_save)
        model.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)

    def on_train_batch_end(self, trainer: Any) -> None:
        # A stop lands between two steps; the last finished epoch's last.pt (with its optimizer
        # state, since Ultralytics' own trainer.stop would strip it) is what a resume starts from.
        if self.stop.is_set():
            raise StopRequested

    def on_train_start(self, trainer: Any) -> None:
        self.started = time.monotonic()
        self.sdk.log_info(f"training {trainer.epochs} epochs from epoch {trainer.start_epoch + 1}")

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
        self.last_epoch = epoch
        self.final_metrics = val
        elapsed = time.monotonic() - self.started
        done = epoch - trainer.start_epoch
        eta = elapsed / done * (trainer.epochs - epoch) if done > 0 else None
        self.sdk.report_metrics(epoch, train, val)
        self.sdk.report_progress(epoch, trainer.epochs, eta)
        self.faults.maybe_raise(epoch)
        if self.stop.is_set() and epoch < trainer.epochs:
            raise StopRequested

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


class Faults:
    """Fault injection for the fault-tolerance tests: `TRAINYARD_FAULT=transient:<epoch>:<attempt>`
    makes that attempt fail with a transient error after that epoch. Unset in normal operation."""

    def __init__(self, epoch: int | None, attempt: int | None) -> None:
        self.epoch = epoch
        self.attempt = attempt

    @classmethod
    def from_env(cls) -> "Faults":
        spec = os.environ.get("TRAINYARD_FAULT", "")
        if not spec.startswith("transient:"):
            return cls(None, None)
        _kind, epoch, attempt = spec.split(":")
        return cls(int(epoch), int(attempt))

    def maybe_raise(self, epoch: int) -> None:
        if epoch == self.epoch and os.environ.get("ATTEMPT") == str(self.attempt):
            raise ConnectionError(f"injected transient fault after epoch {epoch}")


def classify_error(exc: BaseException) -> tuple[str, str]:
    """Map a failure to the seeds' error codes with a message a user can act on."""
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
    env = os.environ
    run_dir = Path(env["RUN_DIR"])
    prepare_offline(Path(env["YOLO_CONFIG_DIR"]))
    from ultralytics import YOLO

    task = ULTRALYTICS_TASK[env["TASK_TYPE"]]
    dataset = Path(env["DATASET_PATH"])
    data = str(dataset if task == "classify" else dataset / "data.yaml")
    reporter = Reporter(sdk, run_dir / "snapshots")
    signal.signal(signal.SIGUSR1, lambda *_: reporter.stop.set())
    resume_from = env.get("RESUME_FROM")
    sdk.report_started(
        pid=os.getpid(),
        device=env.get("DEVICE"),
        resumed_from=resume_from,
        model_source=env.get("MODEL_SOURCE"),
    )
    if resume_from:
        model = YOLO(resume_from, task=task)
        reporter.attach(model)
        # save_dir: the checkpoint remembers the old attempt's folder, possibly on another host.
        try:
            model.train(resume=True, data=data, device=env.get("DEVICE"), save_dir=str(run_dir / "train"))
        except AssertionError as exc:
            if "nothing to resume" not in str(exc):
                raise
            # The previous attempt finished its last epoch but was lost before it said so.
            sdk.log_info("the checkpoint already covers every epoch; nothing left to train")
            sdk.report_completed(reporter.results(int(env.get("EPOCHS") or 0)))
            return
    else:
        model = YOLO(env["MODEL_SOURCE"], task=task)
        reporter.attach(model)
        config = sdk.get_full_config()
        config.update(data=data, device=env.get("DEVICE"), project=str(run_dir), name="train", exist_ok=True)
        model.train(**config)
    trainer: Any = model.trainer
    save_dir = Path(trainer.save_dir)
    artifacts = {name: str(save_dir / name) for name in ("results.csv", "args.yaml")}
    results = reporter.results(trainer.epoch + 1)
    results["model_info"] = model_info(trainer)  # what the model registry records
    sdk.report_completed(results, artifacts)


def model_info(trainer: Any) -> dict[str, Any]:
    """Class names, input size and the package versions the weights were trained with."""
    from importlib.metadata import version

    names = getattr(trainer.data, "get", lambda *_: None)("names") if trainer.data else None
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names)]
    return {
        "class_names": list(names or []),
        "imgsz": int(trainer.args.imgsz) if isinstance(trainer.args.imgsz, int) else None,
        "package_versions": {name: version(name) for name in ("ultralytics", "torch")},
    }


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
