"""Training and inference contending for one GPU lease, with real processes: an API, workers on simulated
GPUs (TRAINYARD_SIMULATE_GPU: the identity, lease and cache policy of GPU N, computing on the CPU), a
private Redis and PostgreSQL. One process trains on gpu0 while another serves inference on gpu0; the
policy decides what an inference request does meanwhile (`wait`, `other-worker`, `reserved`).
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.core.workers import announce
from app.inference.protocol import control_key
from tests.conftest import fresh_postgres
from tests.factories import make_yolo_dataset
from tests.models_inference.test_inference_e2e import jpeg
from tests.support.fleet import Fleet, PrivateRedis
from tests.support.stack import create_key, free_port, stop, wait_for, wait_until
from workers.identity import WorkerIdentity
from workers.inference.sharing import co_tenants, evict_co_tenants
from workers.lock import GpuLease

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LONG = 500  # epochs: a job that is still running whenever we look; tests stop it themselves
HOLD_SECONDS = 8  # longer than any client timeout a wait for the lease passes through


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """API on PostgreSQL and a private Redis; tests start the workers they need on simulated GPUs."""
    root = tmp_path_factory.mktemp("gpu-sharing")
    server = PrivateRedis(root)
    server.start()
    try:
        with fresh_postgres("gpu") as database_url:
            env = {
                "TRAINYARD_DATA_DIR": str(root / "data"),
                "DATABASE_URL": database_url,
                "REDIS_URL": server.url,
                "TRAINYARD_IMPORT_ROOTS": str(tmp_path_factory.getbasetemp()),
                "TRAINYARD_SIMULATE_GPU": "1",
                "TRAINYARD_HEARTBEAT": "1",  # a stop request reaches the trainer within a second
                "TRAINYARD_INFERENCE_TIMEOUT": "60",
            }
            fleet = Fleet(root, env, key=create_key(env))
            port = free_port()
            fleet.url = f"http://127.0.0.1:{port}"
            fleet.others.append(fleet.spawn("api", ["api", "--port", str(port)]))
            try:
                wait_for(f"{fleet.url}/health", root / "api.log")
                yield fleet
            finally:
                for process in [*fleet.workers.values(), *fleet.others]:
                    stop(process, grace=15)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("gpu-data") / "shapes", train=8, val=4, size=64)


def start_gpu_worker(fleet: Fleet, name: str, gpu: int, queues: str, policy: str = "wait") -> None:
    """`trainyard worker --gpu N` (simulated), online once the workers API lists it."""
    fleet.workers[name] = fleet.spawn(
        name,
        ["worker", "--gpu", str(gpu), "--queues", queues, "--name", name],
        {"TRAINYARD_INFERENCE_POLICY": policy},
    )
    wait_until(
        lambda: _worker(fleet, name).get("status") == "online", f"{name} never came online", logs(fleet), 120
    )


def stop_workers(fleet: Fleet, *names: str) -> None:
    for name in names:
        stop(fleet.workers.pop(name), grace=15)


def _worker(fleet: Fleet, name: str) -> dict[str, Any]:
    response = httpx.get(f"{fleet.url}/api/v1/workers/{name}", headers=fleet.headers, timeout=10)
    return response.json() if response.status_code == 200 else {}


def logs(fleet: Fleet) -> Callable[[], str]:
    return lambda: str({name: fleet.log(name)[-2500:] for name in fleet.workers})


def warm_models(fleet: Fleet, worker: str) -> list[int]:
    response = httpx.get(f"{fleet.url}/api/v1/workers/{worker}/models", headers=fleet.headers, timeout=10)
    assert response.status_code == 200, response.text
    return [m["model_id"] for m in response.json()["models"]]


def models_of_job(fleet: Fleet, job_id: int) -> set[int]:
    """The registered models of a job (a stopped or completed job's best checkpoint)."""
    response = httpx.get(f"{fleet.url}/api/v1/models?limit=100", headers=fleet.headers, timeout=10)
    assert response.status_code == 200, response.text
    return {m["id"] for m in response.json()["items"] if m["lineage"]["job_id"] == job_id}


def load(fleet: Fleet, worker: str, model_id: int) -> httpx.Response:
    return httpx.post(
        f"{fleet.url}/api/v1/workers/{worker}/models",
        json={"action": "load", "model_id": model_id},
        headers=fleet.headers,
        timeout=90,
    )


def infer(fleet: Fleet, model_id: int) -> tuple[httpx.Response, datetime]:
    """One request and the moment its answer arrived."""
    response = httpx.post(
        f"{fleet.url}/api/v1/inference",
        files=[("files", ("a.jpg", jpeg(), "image/jpeg"))],
        data={"model_id": str(model_id), "conf": "0"},
        headers=fleet.headers,
        timeout=90,
    )
    return response, datetime.now(UTC)


def long_job(fleet: Fleet, dataset: Path, name: str) -> dict[str, Any]:
    """A job training on gpu0 (status `running`: it holds gpu0's lease)."""
    job = fleet.submit(name, dataset, LONG, imgsz=64, batch=4)
    return fleet.wait_status(job["id"], {"running"}, timeout=60)


def stop_job(fleet: Fleet, job_id: int) -> dict[str, Any]:
    assert fleet.post(job_id, "stop").status_code == 200
    return fleet.wait_status(job_id, {"stopped"}, timeout=60)


def _queued(fleet: Fleet, queue: str) -> int:
    """Messages waiting in a Celery queue (kombu keeps each queue as a Redis list of that name)."""
    return int(redis.Redis.from_url(fleet.env["REDIS_URL"]).llen(queue))


def _utc(stamp: str) -> datetime:
    parsed = datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def model(fleet: Fleet, dataset: Path) -> dict[str, Any]:
    """Two tenants of gpu0 (a trainer and an inference server, two processes) and a registered model
    trained by one and validated (`ready`) by the other."""
    start_gpu_worker(fleet, "gpu0-train", 0, "training")
    start_gpu_worker(fleet, "gpu0-infer", 0, "inference")
    job = fleet.submit("tiny", dataset, 1, imgsz=64, batch=4)

    def ready() -> dict[str, Any] | None:
        assert fleet.job(job["id"])["status"] not in {"failed", "cancelled"}
        items = httpx.get(f"{fleet.url}/api/v1/models", headers=fleet.headers, timeout=10).json()["items"]
        found = next((m for m in items if m["lineage"]["job_id"] == job["id"]), None)
        assert found is None or found["status"] != "failed", found
        return found if found is not None and found["status"] == "ready" else None

    found: dict[str, Any] = wait_until(ready, "the model never became ready", logs(fleet), timeout=180)
    return found


def test_a_silent_co_tenant_delays_a_trainer_only_for_the_bound(tmp_path: Path) -> None:
    """A worker that died still looks live until its presence expires; the trainer does not wait on it."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        # (id, hostname, device): "box-gpu1" is another container of the same machine, its GPU device 0 too.
        for worker_id, node, device in [
            ("dead", "box", "0"),
            ("gpu1", "box", "1"),
            ("far", "other", "0"),
            ("container", "box-gpu1", "0"),
        ]:
            worker = WorkerIdentity(worker_id, device, (), host="box", node=node, simulated=True)
            announce(client, worker_id, {"id": worker_id, "host": "box", "device_key": worker.device_key})
        trainer = WorkerIdentity("gpu0-train", "0", ("training",), host="box", node="box", simulated=True)
        assert co_tenants(client, trainer) == ["dead"]
        assert co_tenants(client, WorkerIdentity("cpu", "cpu", ("training",), node="box")) == []
        started = time.monotonic()
        assert evict_co_tenants(client, trainer, timeout=1.0) == {}
        assert 0.9 <= time.monotonic() - started < 5
        assert client.llen(control_key("dead")) == 1 and client.llen(control_key("gpu1")) == 0
    finally:
        server.stop()


def test_simulated_gpu_workers_keep_their_gpu_identity(fleet: Fleet, model: dict[str, Any]) -> None:
    for name in ("gpu0-train", "gpu0-infer"):
        worker = _worker(fleet, name)
        assert worker["device"] == "0" and worker["gpu_name"] == "simulated GPU 0", worker
    assert _worker(fleet, "gpu0-train")["queues"] == ["training"]
    assert _worker(fleet, "gpu0-infer")["queues"] == ["inference"]


def test_wait_policy_inference_waits_for_the_training_that_evicted_its_models(
    fleet: Fleet, model: dict[str, Any], dataset: Path
) -> None:
    assert load(fleet, "gpu0-infer", model["id"]).status_code == 200
    assert warm_models(fleet, "gpu0-infer") == [model["id"]]

    job = long_job(fleet, dataset, "contender-wait")
    # The trainer took gpu0's lease and, before starting, had the other process on gpu0 drop its models.
    wait_until(lambda: warm_models(fleet, "gpu0-infer") == [], "gpu0-infer kept its models", logs(fleet), 120)
    refused = load(fleet, "gpu0-infer", model["id"])
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "CONFLICT" and "gpu0-train" in refused.json()["detail"]
    assert warm_models(fleet, "gpu0-infer") == []
    # Contend with a trainer that is really training, not one still starting up.
    wait_until(
        lambda: fleet.job(job["id"])["current_epoch"] >= 1, "the trainer never trained", logs(fleet), 120
    )

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(infer, fleet, model["id"])
        wait_until(
            lambda: _queued(fleet, "inference") == 0, "gpu0-infer never took the request", logs(fleet), 120
        )
        assert not pending.done() and fleet.job(job["id"])["status"] == "running"
        stopped = stop_job(fleet, job["id"])
        response, answered_at = pending.result(timeout=90)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["worker"] == "gpu0-infer" and body["cache_hit"] is False  # evicted, so loaded again
    assert answered_at > _utc(stopped["finished_at"]), "answered while the trainer still held gpu0"
    # The stop registered the job's best checkpoint as a model, whose validation (a load and one predict)
    # may have run on this worker meanwhile: besides that one, the evicted model is the only one warm again.
    warm = warm_models(fleet, "gpu0-infer")
    assert model["id"] in warm and set(warm) <= {model["id"], *models_of_job(fleet, job["id"])}, warm


def test_wait_policy_waits_as_long_as_training_holds_the_gpu(fleet: Fleet, model: dict[str, Any]) -> None:
    """Jobs hold a GPU for minutes or hours: a request waits up to its deadline, however long that is."""
    trainer = GpuLease(
        redis.Redis.from_url(fleet.env["REDIS_URL"]),
        WorkerIdentity("trainer", "0", ()).device_key,
        "a-long-job",
        ttl_seconds=60,
    )
    assert trainer.acquire(timeout=1)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(infer, fleet, model["id"])
        try:
            held_until = time.monotonic() + HOLD_SECONDS
            while time.monotonic() < held_until:
                assert not pending.done(), f"answered while gpu0 was held: {pending.result()[0].text}"
                time.sleep(0.3)
        finally:
            trainer.release()
        response, _ = pending.result(timeout=60)
    assert response.status_code == 200 and response.json()["worker"] == "gpu0-infer", response.text


def test_other_worker_policy_sends_requests_to_a_free_gpu(
    fleet: Fleet, model: dict[str, Any], dataset: Path
) -> None:
    stop_workers(fleet, "gpu0-infer")
    start_gpu_worker(fleet, "gpu0-infer", 0, "inference", policy="other-worker")
    start_gpu_worker(fleet, "gpu1-infer", 1, "inference", policy="other-worker")
    job = long_job(fleet, dataset, "contender-other")
    try:
        answers = [infer(fleet, model["id"])[0] for _ in range(4)]
        assert fleet.job(job["id"])["status"] == "running"  # all answered while gpu0 trained
    finally:
        stop_job(fleet, job["id"])
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert {a.json()["worker"] for a in answers} == {"gpu1-infer"}
    assert warm_models(fleet, "gpu0-infer") == []


def test_reserved_gpu_serves_inference_and_never_trains(
    fleet: Fleet, model: dict[str, Any], dataset: Path
) -> None:
    stop_workers(fleet, *list(fleet.workers))
    start_gpu_worker(fleet, "gpu0-reserved", 0, "training,inference", policy="reserved")
    assert _worker(fleet, "gpu0-reserved")["queues"] == ["inference"]
    job = fleet.submit("never-runs", dataset, 1, imgsz=64, batch=4)
    response, _ = infer(fleet, model["id"])
    assert response.status_code == 200 and response.json()["worker"] == "gpu0-reserved", response.text
    # The only worker is alive and serving, yet the job's message is still waiting for a trainer.
    assert fleet.job(job["id"])["status"] == "queued" and _queued(fleet, "training") == 1
    assert fleet.post(job["id"], "cancel").status_code == 200
