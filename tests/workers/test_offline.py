"""Ultralytics on a worker with no internet: nothing a training run does may wait on a download."""

import logging
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from workers.ultralytics.offline import prepare_offline


class OnDevice:
    """Stands in for a model on a GPU (there is none here): check_amp only asks for its device."""

    def __init__(self, device: str) -> None:
        self.device = device

    def parameters(self) -> Any:
        return iter([SimpleNamespace(device=SimpleNamespace(type=self.device))])


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    attempts: list[object] = []

    def refuse(_self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_the_amp_check_on_a_gpu_neither_downloads_nor_waits(
    session_dir: Path, no_network: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    prepare_offline(session_dir / "ultralytics")
    from ultralytics.engine import trainer
    from ultralytics.utils import WEIGHTS_DIR

    assert not (WEIGHTS_DIR / "yolo26n.pt").exists()
    with caplog.at_level(logging.WARNING, logger="operations.training"):
        assert trainer.check_amp(OnDevice("cuda")) is True
    assert no_network == []
    assert "AMP check skipped" in caplog.text


def test_on_a_cpu_the_check_is_ultralytics_own(session_dir: Path, no_network: list[object]) -> None:
    prepare_offline(session_dir / "ultralytics")
    from ultralytics.engine import trainer

    assert trainer.check_amp(torch.nn.Linear(2, 2)) is False  # Ultralytics: no AMP on a CPU
    assert no_network == []
