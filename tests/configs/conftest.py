import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.configs.router import router
from app.core.problems import register_error_handlers


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = FastAPI()
    register_error_handlers(app)
    app.include_router(router)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def ultralytics_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep Ultralytics off the network and out of the home folder; set before it is first imported."""
    config_dir = tmp_path_factory.mktemp("yolo-config")
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    return config_dir
