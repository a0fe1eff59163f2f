"""The framework registry (app/training/frameworks.py): the config a job shows is the one that runs."""

import os

import pytest

from app.core.jobs import Framework
from app.training.frameworks import FRAMEWORKS, framework


def test_every_framework_has_an_entry() -> None:
    assert set(FRAMEWORKS) == set(Framework)
    assert all(framework(f.value).framework == f for f in Framework)


@pytest.mark.parametrize(
    ("device", "asked", "runs"),
    [
        ("cpu", {"workers": 8, "amp": True, "epochs": 3}, {"workers": 0, "amp": False, "epochs": 3}),
        ("cpu", {"epochs": 3}, {"epochs": 3}),  # nothing added that was not asked
        ("0", {"workers": 10_000, "amp": True}, {"workers": os.cpu_count() or 1, "amp": True}),
        ("0", {"workers": 1, "amp": True}, {"workers": 1, "amp": True}),
    ],
)
def test_ultralytics_is_fitted_to_the_device(
    device: str, asked: dict[str, object], runs: dict[str, object]
) -> None:
    assert framework("ultralytics").fit_to_device(asked, device) == runs


def test_the_plain_trainer_runs_its_config_as_is() -> None:
    config = {"epochs": 3, "lr": 0.01, "batch": 16}
    assert framework("pytorch").fit_to_device(config, "cpu") == config
