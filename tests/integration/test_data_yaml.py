"""A data.yaml's `path:` is read as Ultralytics users mean it (relative to the data.yaml's folder), and
submission refuses, with the reason, a dataset whose splits a job could not read."""

import shutil
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from app.training.data_yaml import write_resolved
from tests.integration.test_api_jobs import job_body

pytestmark = pytest.mark.integration


def with_data_yaml(source: Path, target: Path, **fields: object) -> Path:
    shutil.copytree(source, target)
    data = yaml.safe_load((source / "data.yaml").read_text())
    data.pop("path", None)
    data.update(fields)
    (target / "data.yaml").write_text(yaml.safe_dump(data))
    return target


@pytest.mark.parametrize("path", [".", "./", None])
def test_path_dot_or_none_means_the_data_yaml_folder(
    client: TestClient, tmp_path: Path, yolo_dataset: Path, path: str | None
) -> None:
    folder = with_data_yaml(yolo_dataset, tmp_path / "shapes", path=path)
    response = client.post("/api/v1/training/jobs", json=job_body(folder))
    assert response.status_code == 201, response.text
    resolved = yaml.safe_load(write_resolved(folder, tmp_path / "run" / "data.yaml").read_text())
    assert resolved["path"] == str(folder.resolve()) and resolved["train"] == "images/train"


def test_a_relative_path_to_a_sibling_folder_works(
    client: TestClient, tmp_path: Path, yolo_dataset: Path
) -> None:
    shutil.copytree(yolo_dataset / "images", tmp_path / "pictures" / "images")
    shutil.copytree(yolo_dataset / "labels", tmp_path / "pictures" / "labels")
    folder = tmp_path / "config"
    folder.mkdir()
    data = yaml.safe_load((yolo_dataset / "data.yaml").read_text())
    data["path"] = "../pictures"
    (folder / "data.yaml").write_text(yaml.safe_dump(data))
    assert client.post("/api/v1/training/jobs", json=job_body(folder)).status_code == 201


def test_a_split_that_is_not_there_is_refused_with_where_it_was_looked_for(
    client: TestClient, tmp_path: Path, yolo_dataset: Path
) -> None:
    folder = with_data_yaml(yolo_dataset, tmp_path / "shapes", path=".", val="images/valid")
    for route in ("/api/v1/training/jobs", "/api/v1/training/preflight"):
        response = client.post(route, json=job_body(folder))
        body = response.json()
        reason = body["errors"][0]["reason"] if response.status_code == 422 else body["problems"][0]["reason"]
        assert "val: images/valid does not exist under" in reason and str(folder.resolve()) in reason
        assert "datasets_dir" not in reason and "settings" not in reason


def test_a_path_leading_out_of_the_allowed_roots_is_refused(
    client: TestClient, tmp_path: Path, yolo_dataset: Path
) -> None:
    folder = with_data_yaml(yolo_dataset, tmp_path / "shapes", path="/etc")
    response = client.post("/api/v1/training/jobs", json=job_body(folder))
    assert response.status_code == 422
    assert "outside the storage root and import roots" in response.json()["errors"][0]["reason"]


def test_a_bad_project_name_states_the_rule_in_words(client: TestClient, yolo_dataset: Path) -> None:
    response = client.post("/api/v1/training/jobs", json=job_body(yolo_dataset, project="-nope/"))
    error = response.json()["errors"][0]
    assert response.status_code == 422 and error["field"] == "project"
    assert (
        error["reason"].startswith("must be 1 to 100 characters: letters, digits")
        and "^" not in error["reason"]
    )
