"""docker-compose.yml renders and validates (`docker compose config`); no Docker engine is needed."""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LONG_RUNNING = {"redis", "postgres", "minio", "api", "worker-gpu0", "scheduler", "flower"}


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin), else the standalone `docker-compose`; skip when neither exists."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("neither the docker compose plugin nor docker-compose is installed; cannot validate the file")


SECRETS = {
    "TRAINYARD_SECRET_KEY": "test-secret",
    "POSTGRES_PASSWORD": "pg-secret",
    "MINIO_ROOT_PASSWORD": "minio-secret",
    "FLOWER_BASIC_AUTH": "admin:flower-secret",
}


def compose(
    *args: str, secret: str | None = "test-secret", without: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update({k: v for k, v in SECRETS.items() if k != without})
    if secret is None:
        env.pop("TRAINYARD_SECRET_KEY")
    else:
        env["TRAINYARD_SECRET_KEY"] = secret
    return subprocess.run(
        [*compose_command(), "-f", str(ROOT / "docker-compose.yml"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    result = compose("config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_file_is_valid() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_a_secret_key() -> None:
    result = compose("config", "-q", secret=None)
    assert result.returncode != 0
    assert "TRAINYARD_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("secret", ["POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "FLOWER_BASIC_AUTH"])
def test_no_secret_has_a_default(secret: str) -> None:
    result = compose("config", "-q", without=secret)
    assert result.returncode != 0
    assert secret in result.stderr


def test_every_part_of_the_fleet_is_there_with_a_health_check(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert set(services) >= LONG_RUNNING | {"migrate", "minio-setup"}
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in ("redis", "postgres", "minio", "worker-gpu0"):
        assert services[name].get("volumes"), f"{name} keeps nothing across restarts"
    assert services["scheduler"]["command"] == ["trainyard", "scheduler"]
    assert services["flower"]["command"][:4] == ["celery", "-A", "workers.celery_app", "flower"]


def test_redis_keeps_queued_jobs(rendered: dict[str, Any]) -> None:
    command = " ".join(rendered["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_the_gpu_worker_reserves_its_gpu(rendered: dict[str, Any]) -> None:
    worker = rendered["services"]["worker-gpu0"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["device_ids"] == ["0"]
    assert worker["command"][:4] == ["trainyard", "worker", "--gpu", "0"]


def test_the_services_share_postgres_redis_and_s3(rendered: dict[str, Any]) -> None:
    for name in ("api", "worker-gpu0", "scheduler", "migrate"):
        env = rendered["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["TRAINYARD_STORAGE"] == "s3"
        assert env["TRAINYARD_ENV"] == "production"
