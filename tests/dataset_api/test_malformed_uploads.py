"""Malformed datasets and annotation batches: numbers JSON cannot carry back, documents nested past
any use, names the file system refuses, unhashable keys, an image header that declares a bomb. Each is
a 422 (or 413) problem+json naming the field, never a 500, and leaves storage as it was."""

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.dataset_api.conftest import files_under, make_project, upload_dataset, zip_entries, zip_folder
from tests.datasets.factories import detection_images, task_file, write_dice

pytestmark = pytest.mark.integration

DEEP = "[" * 100_000 + "]" * 100_000  # 200 KB: under the form field limit, far past any parser's depth
HUGE_INT = "9" * 5000


def problem(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def png_header(width: int, height: int) -> bytes:
    """A small PNG whose header declares `width` x `height` (its one IDAT holds almost nothing)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def stored(storage: Path) -> list[str]:
    """What storage holds, less the (empty) folder uploads are staged in."""
    return [p for p in files_under(storage) if p != ".uploads"]


def detection_file(replace: tuple[str, str] | None = None) -> str:
    text = json.dumps(task_file("object_detection", detection_images()))
    if replace is not None:
        assert replace[0] in text
        text = text.replace(replace[0], replace[1], 1)
    return text


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (detection_file(('"width": 64', '"width": 1e400')), "not finite"),
        (detection_file(('"width": 64', f'"width": {HUGE_INT}')), "not finite or is larger"),
        (DEEP, "nested deeper than 64 levels"),
        (detection_file(('"width": 64', '"width": NaN')), "NaN is not a number"),
    ],
    ids=["1e400", "5000-digit", "100000-deep", "NaN"],
)
def test_a_dice_file_json_cannot_carry_is_422_naming_the_file(
    client: TestClient, storage: Path, content: str, reason: str
) -> None:
    project = make_project(client, "demo")
    images = [(f"images/train/img{i}.jpg", b"x") for i in range(3)]
    data = zip_entries([("annotations_detection.json", content.encode()), *images])
    before = stored(storage)
    body = problem(upload_dataset(client, project["id"], data))
    error = next(e for e in body["errors"] if e["field"] == "annotations_detection.json")
    assert reason in error["reason"]
    assert stored(storage) == before


def test_an_entry_name_longer_than_a_file_name_may_be_is_422(client: TestClient, storage: Path) -> None:
    project = make_project(client, "demo")
    long_name = "images/train/" + "a" * 300 + ".jpg"
    before = stored(storage)
    body = problem(upload_dataset(client, project["id"], zip_entries([(long_name, b"x")])))
    assert body["errors"] == [
        {"field": f"zip:{long_name}", "reason": "a folder or file name longer than 255 bytes"}
    ]
    assert stored(storage) == before


def test_a_file_that_is_not_a_zip_is_422_without_naming_the_server_file(client: TestClient) -> None:
    project = make_project(client, "demo")
    body = problem(upload_dataset(client, project["id"], b"this is not a zip archive"))
    assert body["errors"][0]["field"] == "file"
    assert ".upload" not in body["detail"] and "/" not in body["detail"], body["detail"]


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
    client: TestClient, dataset_id: int, batch: str, files: list[tuple[str, bytes]] | None = None
) -> Any:
    return client.post(
        f"/api/v1/datasets/{dataset_id}/annotations",
        data={"batch": batch},
        files=[("files", (name, content, "image/png")) for name, content in files or []],
    )


def image(**fields: Any) -> dict[str, Any]:
    return {"file_name": "new.png", "split": "train", "width": 64, "height": 48, "annotations": [], **fields}


@pytest.mark.parametrize(
    ("batch", "field", "reason"),
    [
        ({"images": [image(file_name=["a"])]}, "batch.images", "[0].file_name must be a string"),
        ({"images": [image(split={"a": 1})]}, "batch.images", "[0].split must be a string"),
        ({"images": [image(id=[1])]}, "batch.images", "[0].id must be a integer"),
        ({"images": [image()], "classes": [{"id": [0], "name": "x"}]}, "batch.classes", "[0].id must be"),
    ],
    ids=["file_name-list", "split-dict", "image-id-list", "class-id-list"],
)
def test_unhashable_keys_in_a_batch_are_422(
    client: TestClient, dataset: dict[str, Any], storage: Path, batch: dict[str, Any], field: str, reason: str
) -> None:
    before = stored(storage)
    body = problem(post_batch(client, dataset["id"], json.dumps({"task_type": "detection", **batch})))
    assert body["errors"][0]["field"] == field and reason in body["errors"][0]["reason"], body
    assert stored(storage) == before


@pytest.mark.parametrize(
    ("batch", "reason"),
    [
        (f'{{"task_type": "detection", "images": [{{"width": {HUGE_INT}}}]}}', "larger than"),
        ('{"task_type": "detection", "images": [' + DEEP + "]}", "nested deeper than 64 levels"),
        ('{"task_type": "detection", "images": [{"width": 1e400}]}', "not finite"),
    ],
    ids=["5000-digit", "100000-deep", "1e400"],
)
def test_a_batch_json_cannot_carry_is_422(
    client: TestClient, dataset: dict[str, Any], storage: Path, batch: str, reason: str
) -> None:
    before = stored(storage)
    body = problem(post_batch(client, dataset["id"], batch))
    assert body["errors"][0]["field"] == "batch" and reason in body["errors"][0]["reason"], body
    assert stored(storage) == before


def test_an_image_header_declaring_a_bomb_is_refused_unread(
    client: TestClient, dataset: dict[str, Any], storage: Path
) -> None:
    before = stored(storage)
    batch = {"task_type": "detection", "images": [image(width=30000, height=30000)]}
    body = problem(
        post_batch(client, dataset["id"], json.dumps(batch), [("new.png", png_header(30000, 30000))])
    )
    assert body["errors"][0]["field"] == "files:new.png"
    assert "pixels" in body["errors"][0]["reason"]
    assert stored(storage) == before
