"""The config endpoints as an API user sees them."""

import yaml
from fastapi.testclient import TestClient

from app.core.problems import PROBLEM_JSON


def test_catalog_lists_yolo11_scales_per_task_and_the_checkpoint_source(client: TestClient) -> None:
    response = client.get("/api/v1/models/catalog")

    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()}
    assert {f"yolo11{s}" for s in "nsmlx"} <= set(models)
    assert models["yolo11m"]["model_yamls"] == {
        "detection": "yolo11m.yaml",
        "segmentation": "yolo11m-seg.yaml",
        "classification": "yolo11m-cls.yaml",
        "pose": "yolo11m-pose.yaml",
    }
    assert models["checkpoint"]["source"] == "checkpoint"
    assert models["checkpoint"]["tasks"] == ["detection", "segmentation", "classification", "pose"]


def test_config_schema_describes_every_parameter_of_a_task(client: TestClient) -> None:
    response = client.get("/api/v1/models/yolo11n/config-schema", params={"task": "segmentation"})

    assert response.status_code == 200
    body = response.json()
    [seg] = body["tasks"]
    params = {p["name"]: p for p in seg["params"]}
    assert params["imgsz"] | {"description": ""} == {
        "name": "imgsz",
        "type": "int",
        "default": 640,
        "description": "",
        "group": "basic",
        "user_mode_allowed": True,
        "minimum": 32.0,
        "maximum": 4096.0,
        "exclusive_minimum": False,
        "exclusive_maximum": False,
        "choices": None,
        "nullable": False,
        "multiple_of": 32,
    }
    assert params["optimizer"]["choices"][0] == "auto"
    assert params["mosaic"]["group"] == "advanced" and not params["mosaic"]["user_mode_allowed"]
    assert "mask_ratio" in params
    assert {r["name"] for r in body["reserved"]} >= {"model", "data", "project", "name", "resume"}
    assert "model" not in params


def test_config_schema_without_task_covers_all_tasks_with_their_own_defaults(client: TestClient) -> None:
    body = client.get("/api/v1/models/yolo11s/config-schema").json()
    imgsz = {
        t["task"]: next(p["default"] for p in t["params"] if p["name"] == "imgsz") for t in body["tasks"]
    }
    assert imgsz == {"detection": 640, "segmentation": 640, "classification": 224, "pose": 640}


def test_config_schema_of_an_unknown_model_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/api/v1/models/yolo99z/config-schema")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "NOT_FOUND"
    assert "yolo11n" in response.json()["detail"], "the problem names the models that do exist"


def test_default_config_for_a_task(client: TestClient) -> None:
    response = client.get(
        "/api/v1/training/config/default", params={"framework": "ultralytics", "task": "pose"}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["values"]["pose"] == 12.0
    assert yaml.safe_load(body["yaml"]) == body["values"]
    assert body["cli_preview"].startswith("yolo pose train ")


def test_default_config_for_an_unknown_task_is_a_422_problem(client: TestClient) -> None:
    response = client.get("/api/v1/training/config/default", params={"task": "tracking"})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert [e["field"] for e in response.json()["errors"]] == ["task"]


def test_resolve_returns_values_yaml_cli_preview_and_warnings(client: TestClient) -> None:
    response = client.post(
        "/api/v1/training/config/resolve",
        json={
            "framework": "ultralytics",
            "task": "segmentation",
            "model_name": "yolo11s",
            "base_config": {"epochs": 50, "freeze": [0, 1]},
            "overrides": {"epochs": 3, "imgsz": 320, "lr0": 0.002},
            "mode": "developer",
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"values", "yaml", "cli_preview", "warnings"}
    assert body["values"]["epochs"] == 3 and body["values"]["freeze"] == [0, 1]
    assert "model=yolo11s-seg.yaml" in body["cli_preview"] and "imgsz=320" in body["cli_preview"]
    assert "epochs: 3" in body["yaml"]
    assert any("optimizer is 'auto'" in w for w in body["warnings"])


def test_invalid_config_is_one_problem_with_one_entry_per_bad_field(client: TestClient) -> None:
    response = client.post(
        "/api/v1/training/config/resolve",
        json={
            "task": "detection",
            "overrides": {"epochs": -1, "imgsz": 500, "batch": "16", "lr_0": 0.1, "data": "/etc/data.yaml"},
        },
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 422 and body["code"] == "VALIDATION_ERROR"
    assert body["instance"] == "/api/v1/training/config/resolve"
    errors = {e["field"]: e["reason"] for e in body["errors"]}
    assert set(errors) == {"config.epochs", "config.imgsz", "config.batch", "config.lr_0", "config.data"}
    assert "did you mean 'lr0'?" in errors["config.lr_0"]
    assert "try 512" in errors["config.imgsz"]


def test_user_mode_through_the_api(client: TestClient) -> None:
    body = {"task": "detection", "overrides": {"epochs": 5, "mixup": 0.2}, "mode": "user"}

    user = client.post("/api/v1/training/config/resolve", json=body)
    developer = client.post("/api/v1/training/config/resolve", json={**body, "mode": "developer"})

    assert user.status_code == 422
    assert [e["field"] for e in user.json()["errors"]] == ["config.mixup"]
    assert developer.status_code == 200


def test_unknown_model_name_in_resolve_is_a_field_error(client: TestClient) -> None:
    response = client.post("/api/v1/training/config/resolve", json={"task": "pose", "model_name": "yolov5q"})

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "model_name" and "yolo11n" in error["reason"]


def test_a_misspelt_request_field_is_rejected_rather_than_ignored(client: TestClient) -> None:
    response = client.post(
        "/api/v1/training/config/resolve", json={"task": "pose", "override": {"epochs": 1}}
    )

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["override"]
