"""Fixtures for the dataset API: a client on a clean database (SQLite and PostgreSQL), a storage
folder, DICE datasets as folders and ZIPs, and helpers that say what storage holds."""

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.settings import get_settings
from app.main import create_app
from tests.datasets.factories import full_dataset

pytestmark = pytest.mark.integration


@pytest.fixture
def client(db: Database, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    """The API with an admin key on every request (tests/auth covers the other keys)."""
    with TestClient(create_app(db), headers=admin_headers) as test_client:
        yield test_client


@pytest.fixture
def storage(db: Database) -> Path:
    root = get_settings().resolved_storage_root
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def dice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All four task files over the same five images (tests/datasets/factories.py)."""
    return full_dataset(tmp_path_factory.mktemp("dice") / "synthetic")


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    return buffer.getvalue()


def zip_entries(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def dice_zip(dice_dir: Path) -> bytes:
    return zip_folder(dice_dir)


def make_project(client: TestClient, name: str = "Demo") -> dict[str, Any]:
    response = client.post("/api/v1/projects", json={"name": name})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def upload_dataset(client: TestClient, project_id: int, data: bytes, name: str = "synthetic") -> Any:
    return client.post(
        "/api/v1/datasets",
        data={"project_id": str(project_id), "name": name},
        files={"file": ("dataset.zip", data, "application/zip")},
    )


def files_under(root: Path) -> list[str]:
    """Every file and folder under root (relative), so a test can say 'nothing was left behind'."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def assert_problem(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    for fragment in fragments:
        assert fragment in response.text, (fragment, body)
    return body


def detection_dataset(root: Path, n: int = 20, duplicate: bool = False) -> Path:
    """n distinct images (every 4th in val), one or two boxes each; classes cat (0) and dog (1).

    Image 1 is labelled by a model with confidence 0.3, images 2.. are reviewed by a person, and with
    `duplicate` the last val image has the same bytes as image 1 (train): a leak.
    """
    from PIL import Image

    from tests.datasets.factories import det, image, task_file, write_dice

    images = []
    for i in range(1, n + 1):
        split = "val" if i % 4 == 0 else "train"
        anns = [det(10 * i, i, i % 2, [2, 2, 10, 10], confidence=0.3 if i == 1 else 0.9)]
        if i % 3 == 0:
            anns.append(det(10 * i + 1, i, 0, [20, 20, 8, 8]))
        entry = image(i, f"img{i}.png", split, anns, width=32, height=32)
        if i > 1:
            entry["metadata"] = {"reviewed_by": "a@b.c", "reviewed_at": "2025-01-02T03:04:05+00:00"}
        images.append(entry)
    write_dice(root, {"annotations_detection.json": task_file("object_detection", images)}, make_images=False)
    for entry in images:
        path = root / "images" / entry["split"] / entry["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        shade = (
            1 if duplicate and entry["id"] == max(i for i in range(1, n + 1) if i % 4 == 0) else entry["id"]
        )
        Image.new("RGB", (32, 32), (shade * 7 % 256, shade, 200)).save(path, "PNG")
    return root


def make_dataset(client: TestClient, root: Path, project: str = "demo", **kwargs: Any) -> tuple[int, int]:
    """A project with one detection dataset; returns (project id, dataset id)."""
    project_id = make_project(client, project)["id"]
    response = upload_dataset(client, project_id, zip_folder(detection_dataset(root, **kwargs)))
    assert response.status_code == 201, response.text
    return project_id, response.json()["id"]
