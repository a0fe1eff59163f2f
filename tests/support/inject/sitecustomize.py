"""Fault injection for the tests, kept out of the product: a process started with this folder first
on PYTHONPATH (`INJECT` in tests/support/fleet.py) loads it at startup, and so does every Python
process it starts (a worker's trainers). It misbehaves as told:

- `TRAINYARD_FAULT=transient:<epoch>:<attempt>`: that attempt's trainer fails with a transient error
  right after reporting the end of that epoch;
- `TRAINYARD_FAULT=hang_before_completion:<attempt>`: that attempt trains every epoch and then never
  reports its completion (the test kills its worker: "lost after the last epoch");
- `TRAINYARD_FAULT=gate:<folder>`: a trainer waits at the end of each epoch (after its checkpoints)
  until the test releases its job by creating `<folder>/release-<job id>`, so a job holds its GPU
  exactly as long as the test wants; it creates `<folder>/at-gate-<job id>-<attempt>` while it waits, and
  a stop request (SIGUSR1) ends the wait too, then reaches the trainer's own handler;
- `TRAINYARD_FAULT_SLOW_LOAD=<seconds>`: a worker's model reads take that much longer (a large model).

Self-contained on purpose: the trainer runs in a scratch folder where the tests package is not importable.
"""

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

_SPEC = os.environ.get("TRAINYARD_FAULT", "")
_SLOW_LOAD = float(os.environ.get("TRAINYARD_FAULT_SLOW_LOAD") or 0)


def _attempt_is(attempt: str) -> bool:
    return os.environ.get("ATTEMPT") == attempt


def _install(spec: str) -> None:
    from trainyard_sdk import TrainerSDK

    kind, _, rest = spec.partition(":")
    if kind == "transient":
        epoch, attempt = (int(part) for part in rest.split(":"))
        report_progress = TrainerSDK.report_progress

        def failing_progress(self: TrainerSDK, at: int, epochs: int, **kwargs: Any) -> bool:
            sent = report_progress(self, at, epochs, **kwargs)
            if kwargs.get("batch") is None and at == epoch and _attempt_is(str(attempt)):
                raise ConnectionError(f"injected transient fault after epoch {at}")
            return sent

        TrainerSDK.report_progress = failing_progress  # type: ignore[method-assign, assignment]
    elif kind == "hang_before_completion":
        report_completed = TrainerSDK.report_completed

        def hanging_completion(self: TrainerSDK, *args: Any, **kwargs: Any) -> None:
            while _attempt_is(rest):
                time.sleep(3600)
            report_completed(self, *args, **kwargs)

        TrainerSDK.report_completed = hanging_completion  # type: ignore[method-assign]
    elif kind == "gate":
        report_progress = TrainerSDK.report_progress

        def gated_progress(self: TrainerSDK, at: int, epochs: int, **kwargs: Any) -> bool:
            sent = report_progress(self, at, epochs, **kwargs)
            if kwargs.get("batch") is None and kwargs.get("phase") != "setup":
                _wait_at_gate(rest)
            return sent

        TrainerSDK.report_progress = gated_progress  # type: ignore[method-assign, assignment]


def _wait_at_gate(folder: str) -> None:
    """Until the test releases this job, or its trainer is asked to stop."""
    job, attempt = os.environ["JOB_ID"], os.environ["ATTEMPT"]
    release, at_gate = f"{folder}/release-{job}", f"{folder}/at-gate-{job}-{attempt}"
    if os.path.exists(release):
        return
    stop_requested = []
    trainers_handler = signal.getsignal(signal.SIGUSR1)

    def on_stop(signum: int, frame: Any) -> None:
        stop_requested.append(signum)
        signal.signal(signal.SIGUSR1, trainers_handler)
        if callable(trainers_handler):
            trainers_handler(signum, frame)
        elif trainers_handler == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGUSR1)  # what the signal would have done

    signal.signal(signal.SIGUSR1, on_stop)
    open(at_gate, "w").close()
    try:
        while not stop_requested and not os.path.exists(release):
            time.sleep(0.05)
    finally:
        signal.signal(signal.SIGUSR1, trainers_handler)
        os.unlink(at_gate)


def _after_import(name: str, patch: Callable[[ModuleType], None]) -> None:
    """Run `patch` on module `name` right after it is first imported."""

    class Finder:
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname != name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_patch(module: ModuleType) -> None:
                exec_module(module)
                patch(module)

            spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Finder())


def _slow_reads(module: ModuleType) -> None:
    read_model = module.read_model

    def slow_read_model(*args: Any, **kwargs: Any) -> Any:
        model = read_model(*args, **kwargs)
        time.sleep(_SLOW_LOAD)
        return model

    module.read_model = slow_read_model


if _SPEC:
    _install(_SPEC)
if _SLOW_LOAD:
    _after_import("workers.inference.service", _slow_reads)
