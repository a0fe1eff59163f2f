"""The Models page without a browser: the registry, deploy / roll back / revert with their outcome,
weights download, the Test page, and the same refusals as the API."""

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.settings import get_settings
from tests.conftest import make_api_key
from tests.factories import register_untrained_model
from tests.web.conftest import Jobs, csrf_of, sign_in

pytestmark = pytest.mark.integration


@pytest.fixture
def models(db: Database, jobs: Jobs, tmp_path: Path) -> tuple[int, int]:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"not really weights")
    storage = get_settings().resolved_storage_root
    with db.session() as session:
        first = register_untrained_model(session, storage, weights, "alpha", "first", 64)
        second = register_untrained_model(session, storage, weights, "alpha", "second", 64)
    return first, second


def test_deploy_then_roll_back_and_revert_say_what_they_did(
    admin: TestClient, models: tuple[int, int]
) -> None:
    first, second = models
    headers = {"X-CSRF-Token": csrf_of(admin), "HX-Request": "true"}
    page = admin.get("/models").text
    assert f'id="model-{first}"' in page and "No deployments yet" in page
    deployed = admin.post(f"/models/{first}/deploy", headers=headers)
    assert deployed.status_code == 200 and f"model {first} is the active detection model" in deployed.text
    admin.post(f"/models/{second}/deploy", headers=headers)
    project_id = admin.get("/models").text.split('id="deployment-')[1].split("-")[0]
    rolled = admin.post(f"/projects/{project_id}/deployments/detection/rollback", headers=headers)
    assert rolled.status_code == 200 and f"the active detection model is {first}" in rolled.text
    reverted = admin.post(f"/projects/{project_id}/deployments/detection/revert", headers=headers)
    assert "no active detection model" in reverted.text and "active none" in " ".join(reverted.text.split())
    # Nothing earlier to roll back to past the first deployment: the API's refusal, inline.
    for _ in range(3):
        refused = admin.post(f"/projects/{project_id}/deployments/detection/rollback", headers=headers)
    assert refused.status_code == 409 and "no earlier detection deployment" in refused.text


def test_weights_download_and_test_page(admin: TestClient, models: tuple[int, int]) -> None:
    first, _ = models
    weights = admin.get(f"/models/{first}/weights")
    assert weights.status_code == 200 and weights.content == b"not really weights"
    page = admin.get(f"/models/{first}/test")
    assert page.status_code == 200 and f'data-predict="/models/{first}/predict"' in page.text


def test_a_viewer_has_no_deploy_button_and_another_project_sees_nothing(
    app: FastAPI, keys: dict[str, str], models: tuple[int, int]
) -> None:
    first, _ = models
    viewer = sign_in(app, keys["viewer_alpha"])
    page = viewer.get("/models").text
    assert f'id="model-{first}"' in page and "act-deploy" not in page
    forged = viewer.post(f"/models/{first}/deploy", headers={"X-CSRF-Token": csrf_of(viewer)})
    assert forged.status_code == 403
    assert viewer.get(f"/models/{first}/test").status_code == 200  # testing a model writes nothing
    outsider = sign_in(app, make_api_key(app.state.db, "member", ["beta"]))
    assert f'id="model-{first}"' not in outsider.get("/models").text
    for path in (f"/models/{first}/test", f"/models/{first}/weights"):
        response = outsider.get(path)
        assert response.status_code == 404 and "does not exist" in response.text
