"""Fault injection for the fault tests, kept out of the product: a worker started with this folder
first on PYTHONPATH (tests/faults/conftest.py) loads it into every Python process it runs, so the
trainer it starts misbehaves as `TRAINYARD_FAULT` says:

- `transient:<epoch>:<attempt>`: that attempt fails with a transient error right after reporting the
  end of that epoch;
- `hang_before_completion:<attempt>`: that attempt trains every epoch and then never reports its
  completion (the test kills its worker: "lost after the last epoch").

Self-contained on purpose: the trainer runs in a scratch folder where the tests package is not importable.
"""

import os
import time
from typing import Any

_SPEC = os.environ.get("TRAINYARD_FAULT", "")


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


if _SPEC:
    _install(_SPEC)
