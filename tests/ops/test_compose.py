"""The compose files render and validate with the real Compose CLI (`docker compose config`, no Docker
engine needed; scripts/ensure-compose.sh installs the CLI), and the image builds where an engine runs."""

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from app.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
# The compose files of each setup: one host; the main host of a fleet; a GPU host joining it.
MAIN = ("docker-compose.yml",)
FLEET = (*MAIN, "docker-compose.fleet.yml")
WORKER = ("docker-compose.worker.yml",)
LONG_RUNNING = {"redis", "postgres", "minio", "api", "worker-gpu0", "scheduler", "flower"}

# Every variable each file requires (`${VAR:?...}`): no secret and no address of the fleet has a default.
MAIN_ENV = {
    "TRAINYARD_SECRET_KEY": "test-secret",
    "POSTGRES_PASSWORD": "pg-secret",
    "REDIS_PASSWORD": "redis-secret",
    "MINIO_ROOT_PASSWORD": "minio-secret",
    "FLOWER_BASIC_AUTH": "admin:flower-secret",
}
FLEET_ENV = {**MAIN_ENV, "TRAINYARD_FLEET_ADDRESS": "192.0.2.10"}
WORKER_ENV = {
    "TRAINYARD_HOST": "gpu-host-2",
    "TRAINYARD_SECRET_KEY": "test-secret",
    "TRAINYARD_API_URL": "http://main-host:8000",
    "REDIS_URL": "redis://:redis-secret@main-host:6379/0",
    "DATABASE_URL": "postgresql+psycopg://trainyard:pg-secret@main-host:5432/trainyard",
    "TRAINYARD_S3_ENDPOINT_URL": "http://main-host:9000",
    "AWS_ACCESS_KEY_ID": "trainyard",
    "AWS_SECRET_ACCESS_KEY": "minio-secret",
}
SETUP_ENV = {MAIN: MAIN_ENV, FLEET: FLEET_ENV, WORKER: WORKER_ENV}
ALL_GPUS = {"COMPOSE_PROFILES": "gpu1,gpu2,gpu3"}


def compose_command() -> list[str]:
    """`docker compose` (the v2 plugin), else a standalone v2 `docker-compose`; skip when neither exists."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        short = subprocess.run(
            ["docker-compose", "version", "--short"], capture_output=True, text=True, timeout=30
        )
        if short.stdout.startswith("2."):
            return ["docker-compose"]
    pytest.skip(
        "the Compose v2 CLI is not installed (scripts/ensure-compose.sh installs it, or says why it could "
        "not); cannot validate the compose files"
    )


def compose(files: tuple[str, ...], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`docker compose -f FILE... ARGS` that sees `env` and nothing else the files read (no .env either)."""
    own = {k: os.environ[k] for k in ("PATH", "HOME", "DOCKER_CONFIG") if k in os.environ}
    chosen = [arg for file in files for arg in ("-f", str(ROOT / file))]
    return subprocess.run(
        [*compose_command(), "--env-file", os.devnull, *chosen, *args],
        cwd=ROOT,
        env={**own, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def rendered(files: tuple[str, ...], env: dict[str, str]) -> dict[str, Any]:
    result = compose(files, env, "config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="module")
def one_host() -> dict[str, Any]:
    return rendered(MAIN, MAIN_ENV)


@pytest.fixture(scope="module")
def gpu_host() -> dict[str, Any]:
    """A GPU host with four GPUs: worker-gpu0 and the profiles of the other three."""
    return rendered(WORKER, {**WORKER_ENV, **ALL_GPUS})


def accepted_by_the_cli(command: list[str]) -> None:
    """The real `trainyard` CLI parses the command (an unknown flag or a bad value raises)."""
    assert command[0] == "trainyard"
    group = typer.main.get_command(cli)
    subcommand = group.commands[command[1]]  # type: ignore[attr-defined]
    subcommand.make_context(command[1], command[2:])


@pytest.mark.parametrize("files", SETUP_ENV, ids="+".join)
def test_compose_files_are_valid(files: tuple[str, ...]) -> None:
    result = compose(files, SETUP_ENV[files], "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("files", "variable"),
    [(files, v) for files, env in SETUP_ENV.items() for v in env],
    ids=lambda value: "+".join(value) if isinstance(value, tuple) else value,
)
def test_compose_refuses_a_missing_variable_by_name(files: tuple[str, ...], variable: str) -> None:
    env = {k: v for k, v in SETUP_ENV[files].items() if k != variable}
    result = compose(files, env, "config", "-q")
    assert result.returncode != 0
    assert f"required variable {variable} is missing" in result.stderr


def test_every_part_of_the_fleet_is_there_with_a_health_check(one_host: dict[str, Any]) -> None:
    services = one_host["services"]
    assert set(services) >= LONG_RUNNING | {"migrate", "minio-setup"}
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in ("redis", "postgres", "minio", "worker-gpu0"):
        assert services[name].get("volumes"), f"{name} keeps nothing across restarts"
    assert services["scheduler"]["command"] == ["trainyard", "scheduler"]
    assert services["flower"]["command"][:4] == ["celery", "-A", "workers.celery_app", "flower"]


def test_redis_keeps_queued_jobs(one_host: dict[str, Any]) -> None:
    command = " ".join(one_host["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_redis_wants_its_password(one_host: dict[str, Any]) -> None:
    redis = one_host["services"]["redis"]
    assert " ".join(redis["command"]).endswith("--requirepass redis-secret")
    assert redis["environment"]["REDISCLI_AUTH"] == "redis-secret"  # the health check's redis-cli


def test_the_gpu_worker_reserves_its_gpu_under_a_stable_name(one_host: dict[str, Any]) -> None:
    worker = one_host["services"]["worker-gpu0"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["device_ids"] == ["0"]
    assert worker["command"] == ["trainyard", "worker", "--gpu", "0", "--name", "compose-gpu0"]
    accepted_by_the_cli(worker["command"])
    assert worker["hostname"] == "compose-gpu0"  # the health check and the GPU lease key read it
    assert worker["environment"]["TRAINYARD_CACHE_MAX_GB"] == "50"
    env = {**MAIN_ENV, "TRAINYARD_HOST": "main-host", "TRAINYARD_CACHE_MAX_GB": "200"}
    named = rendered(MAIN, env)["services"]["worker-gpu0"]
    assert named["command"][-1] == named["hostname"] == "main-host-gpu0"
    assert named["environment"]["TRAINYARD_CACHE_MAX_GB"] == "200"


@pytest.mark.parametrize(
    ("env", "host"), [(MAIN_ENV, "compose"), ({**MAIN_ENV, "TRAINYARD_HOST": "box-1"}, "box-1")]
)
def test_the_worker_reports_the_machine_it_runs_on_not_its_container(env: dict[str, str], host: str) -> None:
    """A container's hostname is not the machine's: the worker reports TRAINYARD_HOST, as in its --name."""
    worker = rendered(MAIN, env)["services"]["worker-gpu0"]
    assert worker["environment"]["TRAINYARD_HOST"] == host
    assert worker["command"][-2:] == ["--name", f"{host}-gpu0"]


def test_the_services_share_postgres_redis_and_s3(one_host: dict[str, Any]) -> None:
    for name in ("api", "worker-gpu0", "scheduler", "migrate"):
        env = one_host["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["REDIS_URL"] == "redis://:redis-secret@redis:6379/0"
        assert env["TRAINYARD_STORAGE"] == "s3"
        assert env["TRAINYARD_ENV"] == "production"


def published(service: dict[str, Any]) -> list[tuple[str, str]]:
    return [(port.get("host_ip", ""), port["published"]) for port in service["ports"]]


def unpublished(services: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: v for k, v in service.items() if k != "ports"} for name, service in services.items()}


def test_only_the_fleet_publishes_what_gpu_hosts_reach_on_its_address(one_host: dict[str, Any]) -> None:
    # One host needs none of these ports free; a fleet's main host publishes them to its GPU hosts only.
    services = one_host["services"]
    assert "ports" not in services["redis"] and "ports" not in services["postgres"]
    assert published(services["minio"]) == [("", "9001")]  # the console
    fleet = rendered(FLEET, FLEET_ENV)["services"]
    assert published(fleet["redis"]) == [("192.0.2.10", "6379")]
    assert published(fleet["postgres"]) == [("192.0.2.10", "5432")]
    assert published(fleet["minio"]) == [("", "9001"), ("192.0.2.10", "9000")]
    assert unpublished(fleet) == unpublished(services)  # and changes nothing else


def test_a_gpu_host_runs_one_worker_per_gpu_and_nothing_else(gpu_host: dict[str, Any]) -> None:
    services = gpu_host["services"]
    assert set(services) == {f"worker-gpu{n}" for n in range(4)}
    assert not any(service.get("ports") for service in services.values())
    only_gpu0 = rendered(WORKER, WORKER_ENV)["services"]
    assert set(only_gpu0) == {"worker-gpu0"}


@pytest.mark.parametrize("gpu", range(4))
def test_each_worker_of_a_gpu_host_has_its_gpu_and_name(gpu_host: dict[str, Any], gpu: int) -> None:
    worker = gpu_host["services"][f"worker-gpu{gpu}"]
    name = f"gpu-host-2-gpu{gpu}"
    # The container sees only its reserved GPU, as device 0.
    assert worker["command"] == [
        "trainyard", "worker", "--gpu", "0", "--queues", "training,inference", "--name", name
    ]  # fmt: skip
    accepted_by_the_cli(worker["command"])
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "device_ids": [str(gpu)], "capabilities": ["gpu"]}
    assert worker["hostname"] == name  # the health check and the GPU lease key read it
    assert worker["healthcheck"]["test"]
    assert worker["stop_grace_period"]


def test_a_gpu_host_uses_the_main_hosts_services(gpu_host: dict[str, Any]) -> None:
    for worker in gpu_host["services"].values():
        env = worker["environment"]
        for variable in ("REDIS_URL", "DATABASE_URL", "TRAINYARD_S3_ENDPOINT_URL", "TRAINYARD_API_URL"):
            assert env[variable] == WORKER_ENV[variable]
        assert env["TRAINYARD_SECRET_KEY"] == WORKER_ENV["TRAINYARD_SECRET_KEY"]
        assert env["TRAINYARD_STORAGE"] == "s3" and env["TRAINYARD_S3_BUCKET"] == "trainyard"
        assert env["TRAINYARD_ENV"] == "production"
        assert env["TRAINYARD_CACHE_MAX_GB"] == "50"
        assert env["TRAINYARD_HOST"] == "gpu-host-2"  # the machine, as each of its workers reports it
        [volume] = worker["volumes"]
        assert (volume["type"], volume["source"], volume["target"]) == ("volume", "worker-data", "/data")
    assert "worker-data" in gpu_host["volumes"]


def test_a_gpu_host_takes_its_queues_and_cache_size() -> None:
    env = {**WORKER_ENV, "TRAINYARD_QUEUES": "inference", "TRAINYARD_CACHE_MAX_GB": "200"}
    worker = rendered(WORKER, env)["services"]["worker-gpu0"]
    assert worker["command"][4:6] == ["--queues", "inference"]
    assert worker["environment"]["TRAINYARD_CACHE_MAX_GB"] == "200"


def require_docker_engine() -> None:
    """Skip, saying why, where no Docker engine answers (the CLI alone cannot build)."""
    if not shutil.which("docker"):
        pytest.skip("no Docker engine here: the docker CLI is not installed")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        lines = [line.strip() for line in info.stderr.splitlines() if line.strip()]
        pytest.skip(f"no Docker engine here: `docker info` says {lines[-1] if lines else info.returncode}")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_image_builds_and_runs_the_cli_as_its_own_user() -> None:
    require_docker_engine()
    tag = f"trainyard:test-{uuid.uuid4().hex[:8]}"
    try:
        build = subprocess.run(
            ["docker", "build", "--tag", tag, str(ROOT)], capture_output=True, text=True, timeout=3300
        )
        assert build.returncode == 0, build.stderr[-4000:]
        run = subprocess.run(
            ["docker", "run", "--rm", tag, "sh", "-c", "id -u && trainyard --version"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        uid, version = run.stdout.split("\n", 1)
        assert uid == "1000" and version.startswith("trainyard ")
    finally:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, timeout=120)
