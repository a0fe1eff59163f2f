"""Fixtures for base weights and exports: tiny real Ultralytics checkpoints, made here (no downloads)."""

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.main import create_app


@pytest.fixture
def client(db: Database, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    """The API with an admin key on every request."""
    with TestClient(create_app(db), headers=admin_headers) as test_client:
        yield test_client


def fresh_checkpoint(target: Path, yaml: str = "yolo11n.yaml") -> Path:
    """A freshly built (untrained) model saved as Ultralytics saves one: a real `.pt` of its task."""
    from ultralytics import YOLO

    YOLO(yaml).save(str(target))
    return target


@pytest.fixture(scope="session")
def yolo11n_pt(tmp_path_factory: pytest.TempPathFactory, session_dir: Path) -> Path:
    return fresh_checkpoint(tmp_path_factory.mktemp("weights") / "yolo11n.pt")


@pytest.fixture(scope="session")
def not_models(tmp_path_factory: pytest.TempPathFactory, session_dir: Path) -> dict[str, bytes]:
    """Files that are not Ultralytics models, each refused for its own reason."""
    import pickle

    import torch

    folder = tmp_path_factory.mktemp("not-models")
    torch.save({"epoch": 3, "weights": torch.zeros(4)}, folder / "dict.pt")
    torch.save({"model": torch.nn.Linear(2, 2)}, folder / "linear.pt")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("images/0.jpg", b"\xff\xd8 not much of an image")
    return {
        "random": bytes(range(256)) * 64,
        "pickle": pickle.dumps({"model": "yolo11n", "names": {0: "cat"}}),
        "dict": (folder / "dict.pt").read_bytes(),
        "linear": (folder / "linear.pt").read_bytes(),
        "zip": archive.getvalue(),
    }
