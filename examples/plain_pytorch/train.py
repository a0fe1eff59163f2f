"""A framework-free trainer: a tiny PyTorch classifier that talks to Trainyard only through the contract.

A worker runs it for jobs with `"framework": "pytorch"` (config: epochs, lr, batch). It depends on the
SDK alone (trainyard_sdk: pydantic and httpx) and reads its job from `sdk.context`. It can also run
anywhere and report over HTTP, given the job's callback URL and token (docs/trainer-contract.md):

    CALLBACK_URL=http://127.0.0.1:8000/api/v1/training/jobs/<id>/callback TRAINYARD_JOB_TOKEN=<token> \
        RUN_DIR=<a folder> python examples/plain_pytorch/train.py

With neither a worker nor CALLBACK_URL, reports are printed to stderr.

Like any trainer under the contract it honours a stop request (SIGUSR1: finish the step, report
`stopped`) and continues a resumed attempt from the previous one's `last` checkpoint (RESUME_FROM).
"""

import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from trainyard_sdk import Phase, TrainerSDK


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Points in 8-D, labelled by which side of a fixed plane they fall on."""
    x = torch.randn(n, 8, generator=generator)
    return x, (x @ torch.arange(1.0, 9.0) > 0).long()


@dataclass
class Best:
    """The best epoch so far and its validation metrics (kept in each checkpoint, for a resume)."""

    epoch: int = 0
    val: dict[str, float] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.val.get("accuracy", -1.0)


def resume(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, Best, dict[str, float]]:
    """Load a `last` checkpoint: the epoch it ended, the best so far and that epoch's metrics."""
    saved = torch.load(path)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return saved["epoch"], Best(saved["best_epoch"], saved["best_val"]), saved["val"]


def train(sdk: TrainerSDK) -> None:
    config = sdk.context.config
    epochs, lr = int(config.get("epochs", 3)), float(config.get("lr", 0.01))
    batch = int(config.get("batch", 16))
    run_dir = sdk.context.run_dir or Path(tempfile.mkdtemp(prefix="plain-pytorch-"))
    generator = torch.Generator().manual_seed(0)
    x, y = make_data(512, generator)
    x_val, y_val = make_data(128, generator)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: stop.set())

    resume_from = sdk.context.resume_from
    sdk.report_started(
        pid=os.getpid(),
        framework="pytorch",
        torch=torch.__version__,
        resumed_from=str(resume_from) if resume_from else None,
    )
    sdk.log_info(f"training {epochs} epochs, lr {lr}, batch {batch}")
    done, best, val = resume(resume_from, model, optimizer) if resume_from else (0, Best(), {})
    if done:
        sdk.log_info(f"resumed after epoch {done}")
    started = time.monotonic()
    for epoch in range(done + 1, epochs + 1):
        model.train()
        order, total = torch.randperm(len(x), generator=generator), 0.0
        batches = (len(x) + batch - 1) // batch
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            sdk.report_progress(epoch, epochs, batch=i // batch + 1, batches=batches)  # at most 1/s
            if stop.is_set():  # a resume starts from the last epoch's `last` checkpoint
                sdk.report_stopped()
                return
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            accuracy = (logits.argmax(1) == y_val).float().mean().item()
            val = {"loss": loss_fn(logits, y_val).item(), "accuracy": accuracy}
        sdk.report_metrics(epoch, {"loss": total / len(x)}, val)
        kinds = ["last"] + (["best"] if val["accuracy"] > best.accuracy else [])
        if "best" in kinds:
            best = Best(epoch, dict(val))
        for kind in kinds:
            path = run_dir / f"{kind}-epoch{epoch}.pt"
            weights = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            torch.save(
                {"epoch": epoch, "val": val, "best_epoch": best.epoch, "best_val": best.val, **weights}, path
            )
            sdk.report_checkpoint(kind, str(path), epoch, val)
        elapsed = time.monotonic() - started
        eta = elapsed / (epoch - done) * (epochs - epoch)
        sdk.report_progress(epoch, epochs, eta_s=eta, phase=Phase.FINAL if epoch == epochs else Phase.TRAIN)
    seconds = round(time.monotonic() - started, 3)
    sdk.report_completed(
        {
            "best_epoch": best.epoch,
            "best_metrics": best.val,
            "final_metrics": val,
            "training_time_seconds": seconds,
            "epochs_completed": epochs,
        }
    )


def main() -> None:
    sdk = TrainerSDK.from_env()
    try:
        train(sdk)
    except Exception as exc:
        sdk.log_error(f"{type(exc).__name__}: {exc}")
        sdk.report_failed("TRAINER_CRASHED", f"{type(exc).__name__}: {exc}")
        sdk.close()
        sys.exit(1)
    sdk.close()


if __name__ == "__main__":
    main()
