"""Dataset paths at submission: a data.yaml's `path:` is read as Ultralytics users mean it (relative to the
data.yaml's folder); submission refuses, with the reason and where it looked, a dataset a job could not
read; a bad name is told the naming rule in words."""

import shutil
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from app.core.db import Database
from app.training.data_yaml import write_resolved
from tests.conftest import bearer_headers, make_api_key
from tests.training.test_api_jobs import job_body

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
        expected = (
            "data.yaml val: 'images/valid' does not exist under path: '.' (read from the data.yaml's folder)"
        )
        assert reason == expected
        assert "datasets_dir" not in reason and str(tmp_path) not in reason


def test_a_path_leading_out_of_the_allowed_roots_is_refused(
    client: TestClient, tmp_path: Path, yolo_dataset: Path
) -> None:
    folder = with_data_yaml(yolo_dataset, tmp_path / "shapes", path="/etc")
    response = client.post("/api/v1/training/jobs", json=job_body(folder))
    assert response.status_code == 422
    reason = response.json()["errors"][0]["reason"]
    assert reason.startswith("data.yaml path: '/etc' leads outside the folders this dataset may read")


def test_a_data_yaml_in_a_project_folder_may_not_reach_into_another_project(
    client: TestClient, env: Path, yolo_dataset: Path
) -> None:
    storage = env / "data" / "storage"
    shutil.copytree(yolo_dataset, storage / "projects" / "alpha" / "datasets" / "shapes")
    folder = with_data_yaml(yolo_dataset, storage / "projects" / "beta" / "datasets" / "probe")
    data = yaml.safe_load((folder / "data.yaml").read_text())
    data["path"] = "../../../alpha/datasets/shapes"
    (folder / "data.yaml").write_text(yaml.safe_dump(data))
    response = client.post("/api/v1/training/jobs", json=job_body(folder, project="beta"))
    assert response.status_code == 422 and "leads outside" in response.json()["errors"][0]["reason"]
    data["path"] = "."  # its own project's folder is fine
    (folder / "data.yaml").write_text(yaml.safe_dump(data))
    assert client.post("/api/v1/training/jobs", json=job_body(folder, project="beta")).status_code == 201


def test_a_bad_project_name_states_the_rule_in_words(client: TestClient, yolo_dataset: Path) -> None:
    response = client.post("/api/v1/training/jobs", json=job_body(yolo_dataset, project="-nope/"))
    error = response.json()["errors"][0]
    assert response.status_code == 422 and error["field"] == "project"
    assert (
        error["reason"].startswith("must be 1 to 100 characters: letters, digits")
        and "^" not in error["reason"]
    )


def test_a_folder_that_is_not_there_says_how_to_share_one_and_only_an_all_projects_key_where_it_looked(
    client: TestClient, db: Database, env: Path, yolo_dataset: Path
) -> None:
    storage = (env / "data" / "storage").resolve()
    member = bearer_headers(make_api_key(db, "member", ["demo"]))
    for given in ("projects/demo/nope", "/opt"):  # its own project's folder; outside every root
        scoped = client.post(
            "/api/v1/training/jobs", json=job_body(yolo_dataset, dataset_path=given), headers=member
        )
        reason = scoped.json()["errors"][0]["reason"]
        assert scoped.status_code == 422 and repr(given) in reason
        assert "storage root (TRAINYARD_DATA_DIR/storage)" in reason and "TRAINYARD_IMPORT_ROOTS=<" in reason
        assert str(storage) not in scoped.text and "resolved to" not in reason
    # Outside its projects: the words of a folder of a project that does not exist, nothing more.
    elsewhere = client.post(
        "/api/v1/training/jobs", json=job_body(yolo_dataset, dataset_path="datasets/nope"), headers=member
    )
    assert elsewhere.status_code == 404
    assert elsewhere.json()["errors"] == [
        {"field": "dataset_path", "reason": "folder 'datasets/nope' does not exist"}
    ]
    for given, resolved in (
        ("datasets/nope", storage / "datasets" / "nope"),
        ("/opt", Path("/opt").resolve()),
    ):
        admin = client.post("/api/v1/training/jobs", json=job_body(yolo_dataset, dataset_path=given))
        reason = admin.json()["errors"][0]["reason"]
        assert admin.status_code == 422 and "TRAINYARD_IMPORT_ROOTS=<" in reason
        assert f"{given!r} (resolved to {resolved}; storage root {storage}; import roots: " in reason


def test_a_folder_changed_after_a_submission_is_checked_as_it_is_now(
    client: TestClient, tmp_path: Path, yolo_dataset: Path
) -> None:
    # The data.yaml is parsed once per version of the file: what changes, in it or in the folders it names,
    # is seen by the next submission.
    folder = with_data_yaml(yolo_dataset, tmp_path / "shapes", path=".")
    assert client.post("/api/v1/training/jobs", json=job_body(folder, name="first")).status_code == 201
    shutil.rmtree(folder / "images" / "val")
    gone = client.post("/api/v1/training/jobs", json=job_body(folder, name="second"))
    assert gone.status_code == 422 and "'images/val' does not exist" in gone.text
    data = yaml.safe_load((folder / "data.yaml").read_text())
    (folder / "data.yaml").write_text(yaml.safe_dump({**data, "val": "images/train"}))
    assert client.post("/api/v1/training/jobs", json=job_body(folder, name="third")).status_code == 201
    (folder / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/train"}))
    no_names = client.post("/api/v1/training/jobs", json=job_body(folder, name="fourth"))
    assert no_names.status_code == 422 and "data.yaml lacks names" in no_names.text
