"""Adding images and annotations to a dataset in batches, and the stats endpoint."""

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.dataset_api.conftest import assert_problem, files_under, make_project, upload_dataset, zip_folder
from tests.datasets.factories import detection_images, task_file, write_dice

pytestmark = pytest.mark.integration


def png(width: int = 64, height: int = 48, shade: int = 10) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (shade, shade, shade)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def dataset(client: TestClient, tmp_path: Path) -> dict[str, Any]:
    project = make_project(client, "demo")
    folder = write_dice(
        tmp_path / "d", {"annotations_detection.json": task_file("object_detection", detection_images())}
    )
    response = upload_dataset(client, project["id"], zip_folder(folder))
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def post_batch(
    client: TestClient, dataset_id: int, batch: dict[str, Any], files: list[tuple[str, bytes]]
) -> Any:
    return client.post(
        f"/api/v1/datasets/{dataset_id}/annotations",
        data={"batch": json.dumps(batch)},
        files=[("files", (name, content, "image/png")) for name, content in files],
    )


def test_batch_adds_images_and_annotations_then_stats_count_them(
    client: TestClient, dataset: dict[str, Any], storage: Path
) -> None:
    batch = {
        "task_type": "detection",
        "classes": [{"id": 2, "name": "bird"}],
        "images": [
            {
                "file_name": "new/f.png",
                "split": "train",
                "width": 64,
                "height": 48,
                "annotations": [
                    {"class_id": 2, "bbox": [1, 1, 10, 10]},
                    {"class_id": 0, "bbox": [5, 5, 5, 5]},
                ],
            },
            {"file_name": "g.png", "split": "val", "width": 64, "height": 48, "annotations": []},
            # An image already in the dataset: annotations appended, no upload needed.
            {
                "file_name": "d.jpg",
                "split": "val",
                "width": 64,
                "height": 48,
                "annotations": [{"class_id": 1, "bbox": [0, 0, 8, 8]}],
            },
        ],
    }
    response = post_batch(client, dataset["id"], batch, [("new/f.png", png()), ("g.png", png(shade=99))])
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["images_added"], body["images_updated"], body["annotations_added"]) == (2, 1, 3)
    assert body["dataset"]["total_images"] == 7 and body["dataset"]["total_annotations"] == 8
    assert body["dataset"]["annotations"]["detection"]["classes"] == ["cat", "dog", "bird"]
    assert (storage / dataset["storage_path"] / "images/train/new/f.png").is_file()

    stats = client.get(f"/api/v1/datasets/{dataset['id']}/annotations/stats").json()
    detection = stats["tasks"]["detection"]
    assert detection["classes"] == {"cat": 3, "dog": 4, "bird": 1}
    assert detection["splits"]["train"] == {"images": 4, "annotations": 5}
    assert detection["splits"]["val"] == {"images": 2, "annotations": 2}
    # Only the uploaded images carry labeled_at (the factory's images have none).
    assert stats["first_labeled_at"] is not None and stats["first_labeled_at"] == stats["last_labeled_at"]


@pytest.mark.parametrize(
    ("image", "files", "fragment"),
    [
        (
            {
                "file_name": "x.png",
                "split": "train",
                "width": 64,
                "height": 48,
                "annotations": [{"class_id": 9, "bbox": [1, 1, 2, 2]}],
            },
            [("x.png", png())],
            "unknown class_id 9",
        ),
        (
            {
                "file_name": "x.png",
                "split": "train",
                "width": 64,
                "height": 48,
                "annotations": [{"class_id": 0, "bbox": [60, 1, 20, 2]}],
            },
            [("x.png", png())],
            "outside the 64x48",
        ),
        (
            {"file_name": "x.png", "split": "train", "width": 64, "height": 48, "annotations": []},
            [],
            "missing file",
        ),
        (
            {"file_name": "x.png", "split": "train", "width": 32, "height": 48, "annotations": []},
            [("x.png", png())],
            "the file is 64x48",
        ),
        (
            {"file_name": "x.png", "split": "train", "width": 64, "height": 48, "annotations": []},
            [("x.png", b"not an image")],
            "not an image",
        ),
        (
            {"file_name": "../x.png", "split": "train", "width": 64, "height": 48, "annotations": []},
            [("../x.png", png())],
            "file_name",
        ),
        (
            {"file_name": "x.png", "split": "holdout", "width": 64, "height": 48, "annotations": []},
            [("x.png", png())],
            "bad split name",
        ),
        (
            {"file_name": "a.jpg", "split": "train", "width": 64, "height": 48, "annotations": []},
            [("a.jpg", png())],
            "a different file with this name",
        ),
    ],
    ids=[
        "unknown class",
        "bbox outside",
        "missing file",
        "size mismatch",
        "not an image",
        "traversal",
        "bad split",
        "immutable image",
    ],
)
def test_bad_batches_change_nothing(
    client: TestClient,
    dataset: dict[str, Any],
    storage: Path,
    image: dict[str, Any],
    files: list[tuple[str, bytes]],
    fragment: str,
) -> None:
    source = storage / dataset["storage_path"]
    before = {p: (source / p).read_bytes() for p in files_under(source) if (source / p).is_file()}
    response = post_batch(client, dataset["id"], {"task_type": "detection", "images": [image]}, files)
    assert_problem(response, 422, fragment)
    after = {p: (source / p).read_bytes() for p in files_under(source) if (source / p).is_file()}
    assert after == before
    assert client.get(f"/api/v1/datasets/{dataset['id']}").json()["total_images"] == 5


def test_batch_json_errors(client: TestClient, dataset: dict[str, Any]) -> None:
    url = f"/api/v1/datasets/{dataset['id']}/annotations"
    assert_problem(client.post(url, data={"batch": "{"}), 422, "not valid JSON")
    assert_problem(
        client.post(url, data={"batch": json.dumps({"task_type": "depth", "images": []})}), 422, "batch."
    )
    assert_problem(post_batch(client, 4242, {"task_type": "detection", "images": [{}]}, []), 404)
