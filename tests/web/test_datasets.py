"""Datasets and versions without a browser: upload a DICE ZIP from the page, counts and the gallery's
annotations, freeze versions and diff them, and the same refusals as the API."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.db import Database
from tests.conftest import make_api_key
from tests.dataset_api.conftest import detection_dataset, zip_folder
from tests.web.conftest import Jobs, csrf_of, sign_in

pytestmark = pytest.mark.integration


def project_id_of(client: TestClient, name: str) -> int:
    page = client.get("/datasets").text
    match = re.search(rf'<option value="(\d+)"[^>]*>{name}</option>', page)
    assert match, page
    return int(match.group(1))


def upload(client: TestClient, project_id: int, folder: Path, name: str) -> int:
    response = client.post(
        "/datasets",
        data={"project_id": str(project_id), "name": name, "csrf_token": csrf_of(client)},
        files={"file": ("d.zip", zip_folder(folder), "application/zip")},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 204, response.text
    return int(response.headers["HX-Redirect"].rsplit("/", 1)[1])


def test_upload_see_counts_and_the_gallery_annotations(admin: TestClient, jobs: Jobs, tmp_path: Path) -> None:
    alpha = project_id_of(admin, "alpha")
    dataset_id = upload(admin, alpha, detection_dataset(tmp_path / "det", n=6), "shapes")
    page = admin.get(f"/datasets/{dataset_id}").text
    assert "6 images" in page
    data = json.loads(re.search(r'id="gallery-data"[^>]*>(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert len(data) == 6 and all(item["annotations"] for item in data)
    first = data[0]
    assert len(first["annotations"][0]["box"]) == 4 and first["annotations"][0]["class_name"]
    image = admin.get(f"/datasets/{dataset_id}/files/{first['path']}")
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    assert admin.get(f"/datasets/{dataset_id}/files/../../secret_key").status_code == 404
    # A bad ZIP is refused with the API's reason, and nothing is kept.
    bad = admin.post(
        "/datasets",
        data={"project_id": str(alpha), "name": "broken", "csrf_token": csrf_of(admin)},
        files={"file": ("d.zip", b"not a zip", "application/zip")},
        headers={"HX-Request": "true"},
    )
    assert bad.status_code in (400, 422) and "zip" in bad.text.lower()
    assert "broken" not in admin.get("/datasets").text


def test_freeze_two_versions_and_diff_them(admin: TestClient, jobs: Jobs, tmp_path: Path) -> None:
    alpha = project_id_of(admin, "alpha")
    upload(admin, alpha, detection_dataset(tmp_path / "det", n=6), "shapes")
    token = csrf_of(admin)
    for name in ("first", "second"):
        frozen = admin.post(f"/projects/{alpha}/versions", data={"csrf_token": token, "display_name": name})
        assert frozen.status_code == 303
    page = admin.get(f"/projects/{alpha}/versions").text
    ids = [int(i) for i in re.findall(r'<tr id="version-(\d+)">', page)]
    assert len(ids) == 2 and "shapes v2 second" in page
    diff = admin.get(f"/projects/{alpha}/versions", params={"base": ids[1], "other": ids[0]}).text
    assert 'id="version-diff"' in diff


def test_a_viewer_cannot_upload_or_freeze_and_others_see_nothing(
    app: FastAPI, admin: TestClient, db: Database, keys: dict[str, str], tmp_path: Path
) -> None:
    alpha = project_id_of(admin, "alpha")
    dataset_id = upload(admin, alpha, detection_dataset(tmp_path / "det", n=3), "shapes")
    viewer = sign_in(app, keys["viewer_alpha"])
    page = viewer.get("/datasets").text
    assert f'id="dataset-{dataset_id}"' in page and 'id="upload"' not in page
    assert "Freeze" not in viewer.get(f"/projects/{alpha}/versions").text
    refused = viewer.post(f"/projects/{alpha}/versions", data={"csrf_token": csrf_of(viewer)})
    assert refused.status_code == 403
    outsider = sign_in(app, make_api_key(db, "member", ["beta"]))
    assert f'id="dataset-{dataset_id}"' not in outsider.get("/datasets").text
    for path in (f"/datasets/{dataset_id}", f"/projects/{alpha}/versions"):
        assert outsider.get(path).status_code == 404, path


def preview_samples(fragment: str) -> list[dict[str, Any]]:
    found = re.search(r'class="preview-samples">(.*?)</script>', fragment, re.S)
    assert found, fragment
    samples: list[dict[str, Any]] = json.loads(found.group(1))
    return samples


def test_the_version_form_previews_what_a_freeze_then_makes(
    admin: TestClient, jobs: Jobs, keys: dict[str, str], tmp_path: Path
) -> None:
    alpha = project_id_of(admin, "alpha")
    upload(admin, alpha, detection_dataset(tmp_path / "det", n=8), "shapes")
    settings = {"tile": "2x2", "keep_empty_tiles": "true", "multiplier": "2", "horizontal_flip": "true"}
    form = {"csrf_token": csrf_of(admin), "display_name": "tiled", **settings}
    shown = admin.post(f"/projects/{alpha}/versions/preview", data=form, headers={"HX-Request": "true"})
    assert shown.status_code == 200, shown.text
    # 8 images (6 train, 2 val) -> 4 tiles each, the training tiles twice (the original and a flip).
    assert "<strong>56</strong> images" in shown.text
    assert 'data-split="train">train 48' in shown.text and 'data-split="val">val 8' in shown.text
    samples = preview_samples(shown.text)
    assert samples and all(s["src"].startswith("data:image/") for s in samples)
    boxes = [a["box"] for s in samples for a in s["annotations"] if "box" in a]
    assert boxes and all(0 <= v <= 16 for box in boxes for v in box)  # inside a 16x16 tile
    assert {a["class_name"] for s in samples for a in s["annotations"]} <= {"cat", "dog"}
    assert admin.get(f"/projects/{alpha}/versions").text.count('<tr id="version-') == 0  # nothing frozen

    assert admin.post(f"/projects/{alpha}/versions", data=form).status_code == 303
    bearer = {"Authorization": f"Bearer {keys['admin']}"}
    api = admin.get(f"/api/v1/projects/{alpha}/versions", headers=bearer)
    (version,) = api.json()["versions"]
    assert version["image_count"] == 56 and version["display_name"] == "tiled"
    assert version["preprocessing"]["tile"] == "2x2" and version["augmentation"]["multiplier"] == 2


def test_a_bad_setting_in_the_version_form_names_the_field_and_freezes_nothing(
    admin: TestClient, jobs: Jobs, tmp_path: Path
) -> None:
    alpha = project_id_of(admin, "alpha")
    upload(admin, alpha, detection_dataset(tmp_path / "det", n=4), "shapes")
    for path in (f"/projects/{alpha}/versions/preview", f"/projects/{alpha}/versions"):
        form = {"csrf_token": csrf_of(admin), "rotation": "999", "tile": "many"}
        refused = admin.post(path, data=form, headers={"HX-Request": "true"})
        assert refused.status_code == 422, refused.text
        assert "rotation" in refused.text and "tile" in refused.text
        # 4x4 tiles of its 32x32 images are 8x8, smaller than the 16x16 input: said beside the rotation.
        form = {"csrf_token": csrf_of(admin), "rotation": "999", "tile": "4x4", "resize": "16x16"}
        refused = admin.post(path, data=form, headers={"HX-Request": "true"})
        assert refused.status_code == 422, refused.text
        assert "rotation" in refused.text and "smaller than the 16x16 input" in refused.text
    assert "No versions yet." in admin.get(f"/projects/{alpha}/versions").text


def test_a_viewer_may_preview_a_version_but_sees_no_freeze_button(
    app: FastAPI, admin: TestClient, keys: dict[str, str], tmp_path: Path
) -> None:
    alpha = project_id_of(admin, "alpha")
    upload(admin, alpha, detection_dataset(tmp_path / "det", n=4), "shapes")
    viewer = sign_in(app, keys["viewer_alpha"])
    page = viewer.get(f"/projects/{alpha}/versions").text
    assert 'id="preview-button"' in page and 'id="freeze-button"' not in page
    shown = viewer.post(
        f"/projects/{alpha}/versions/preview",
        data={"csrf_token": csrf_of(viewer), "multiplier": "3", "vertical_flip": "true"},
        headers={"HX-Request": "true"},
    )
    assert shown.status_code == 200, shown.text
    assert preview_samples(shown.text)
