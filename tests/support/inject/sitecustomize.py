"""Fault injection for the tests, kept out of the product: a process started with this folder first
on PYTHONPATH (`INJECT` in tests/support/fleet.py) loads it at startup, and so does every Python
process it starts (a worker's trainers). It misbehaves as told:

- `TRAINYARD_FAULT=transient:<epoch>:<attempt>`: that attempt's trainer fails with a transient error
  right after reporting the end of that epoch;
- `TRAINYARD_FAULT=hang_before_completion:<attempt>`: that attempt trains every epoch and then never
  reports its completion (the test kills its worker: "lost after the last epoch");
- `TRAINYARD_FAULT_SLOW_LOAD=<seconds>`: a worker's model reads take that much longer (a large model).

Self-contained on purpose: the trainer runs in a scratch folder where the tests package is not importable.
"""

import importlib.util
import os
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

        TrainerSDK.report_progress = failing_progress  # type: ignore[method-assign]
    elif kind == "hang_before_completion":
        report_completed = TrainerSDK.report_completed

        def hanging_completion(self: TrainerSDK, *args: Any, **kwargs: Any) -> None:
            while _attempt_is(rest):
                time.sleep(3600)
            report_completed(self, *args, **kwargs)

        TrainerSDK.report_completed = hanging_completion  # type: ignore[method-assign]


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
