"""Warm inference through Trainyard (REST -> inference queue -> worker -> reply key -> response) against a
direct `model.predict` on the same images, in the same run: p50/p99 latency of one image and images/s for
a batch of 64, both ways. Real processes (API, one CPU worker) on a SQLite file and a private Redis.
Also the CPU time each process spends per request (API, worker, the floor's two), which a loaded machine
moves far less than the wall clock.

    .venv/bin/python bench/bench_inference.py [--requests 100] [--imgsz 320]

The model is YOLO11n (random weights: the cost of a forward pass does not depend on what it learned),
registered as `ready` and warmed in the worker's cache before anything is timed. Both sides decode the
same JPEG bytes; the direct side runs in this process while the worker is idle, and vice versa.
"""

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core import migrate
from app.core.db import Database
from bench.suite import emit, percentile
from tests.conftest import make_api_key
from tests.factories import register_untrained_model
from tests.support.fleet import PrivateRedis
from tests.support.stack import TRAINYARD, free_port, running, wait_for
from workers.ultralytics.offline import prepare_offline

BENCH = Path(__file__).resolve().parent
# The floor's calls are spaced like the path's parts, whose processes sleep between messages (waking a
# sleeping process costs this machine ~1.5 ms: a Celery round trip is 1.7 ms back to back, 3.1 spaced).
FLOOR_PAUSE = 0.01


def images(count: int, seed: int = 0) -> list[bytes]:
    """640x480 JPEGs: a few filled shapes on a noisy background."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        image = Image.effect_noise((640, 480), 40).convert("RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = rng.randint(0, 560), rng.randint(0, 400)
            draw.rectangle(
                [x, y, x + rng.randint(20, 80), y + rng.randint(20, 80)],
                fill=(rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)),
            )
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def cpu_ms(process: psutil.Process) -> float:
    """CPU time the process has used so far (all its threads), ms."""
    times = process.cpu_times()
    return (times.user + times.system) * 1000


def floor(
    port: int, redis_url: str, pictures: list[bytes], runs: int, api: psutil.Process, worker: psutil.Process
) -> tuple[float, float, float, float]:
    """p50 ms of the two parts no REST -> Celery path can avoid (bench/floor.py), and the CPU ms per call
    of the bare API and of the raw Celery worker."""
    from celery import Celery

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as bare:
        bare.post("/upload", files=[("files", ("0.jpg", pictures[0], "image/jpeg"))]).raise_for_status()
        counter = iter(range(10**9))
        api_cpu = cpu_ms(api)
        http_ms = timed(
            lambda: bare.post(
                "/upload", files=[("files", ("a.jpg", pictures[next(counter) % 64], "image/jpeg"))]
            ).raise_for_status(),
            runs,
            FLOOR_PAUSE,
        )
        api_cpu = (cpu_ms(api) - api_cpu) / runs
    client = Celery("floor-client", broker=redis_url)
    client.conf.update(task_serializer="json", accept_content=["json"])
    replies = redis.Redis.from_url(redis_url)

    def round_trip() -> None:
        key = f"floor:reply:{time.monotonic_ns()}"
        client.send_task("floor.echo", args=[key])
        assert replies.blpop([key], 30) is not None, "the floor worker did not answer"

    round_trip()  # the worker is up once it answers
    worker_cpu = cpu_ms(worker)
    celery_ms = timed(round_trip, runs, FLOOR_PAUSE)
    worker_cpu = (cpu_ms(worker) - worker_cpu) / runs
    return statistics.median(http_ms), statistics.median(celery_ms), api_cpu, worker_cpu


def via_api(http: httpx.Client, model_id: int, batch: list[bytes], imgsz: int) -> dict[str, Any]:
    files = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(batch)]
    response = http.post(
        "/api/v1/inference",
        files=files,
        data={"model_id": str(model_id), "imgsz": str(imgsz), "conf": "0.25"},
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def direct(model: Any, batch: list[bytes], imgsz: int) -> Any:
    decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in batch]
    return model.predict(decoded, imgsz=imgsz, conf=0.25, device="cpu", verbose=False)


def timed(call: Any, runs: int, pause: float = 0.0) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
        time.sleep(pause)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--imgsz", type=int, default=320)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    prepare_offline(root / "ultralytics")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(root / "ultralytics"))
    from ultralytics import YOLO

    weights = root / "yolo11n.pt"
    YOLO("yolo11n.yaml").save(weights)
    model = YOLO(str(weights), task="detect")

    database_url = f"sqlite:///{root / 'trainyard.db'}"
    migrate.upgrade(database_url)
    storage = root / "data" / "storage"
    db = Database(database_url)
    key = make_api_key(db)
    with db.session() as session:
        model_id = register_untrained_model(session, storage, weights, "bench", "yolo11n-random", args.imgsz)
    db.dispose()
    redis_server = PrivateRedis(root)
    redis_server.start()
    env = {
        "TRAINYARD_DATA_DIR": str(root / "data"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
    }
    pictures = images(64)
    port, floor_port = free_port(), free_port()
    floor_env = {"REDIS_URL": redis_server.url, "PYTHONPATH": str(BENCH)}
    python = [sys.executable, "-m"]
    try:
        with (
            running([*TRAINYARD, "api", "--port", str(port)], env, root / "api.log") as api,
            running(
                [*TRAINYARD, "worker", "--device", "cpu", "--name", "bench"], env, root / "worker.log"
            ) as worker,
            running(
                [*python, "uvicorn", "--app-dir", str(BENCH), "floor:api", "--port", str(floor_port)],
                floor_env,
                root / "floor-api.log",
            ) as floor_api,
            running(
                [*python, "celery", "-A", "floor", "worker", "--pool", "threads", "--concurrency", "1"],
                floor_env,
                root / "floor-worker.log",
            ) as floor_worker,
            httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=300, headers={"Authorization": f"Bearer {key}"}
            ) as http,
        ):
            wait_for(f"http://127.0.0.1:{port}/health", root / "worker.log", workers=1)
            wait_for(f"http://127.0.0.1:{floor_port}/openapi.json", root / "floor-api.log")
            for i in range(5):  # warm both sides: the worker's cache, this process's model
                via_api(http, model_id, [pictures[i]], args.imgsz)
                direct(model, [pictures[i]], args.imgsz)

            # One request through the stack, then the same image predicted directly, in turn: both see
            # the same machine (in blocks, the direct figure alone moved 42 -> 58 ms between runs here).
            # The stack idles while this process predicts, so its CPU over the loop is the requests'.
            replies: list[dict[str, Any]] = []
            api_ms, direct_ms, direct_cpu = [], [], 0.0
            stack = [psutil.Process(p.pid) for p in (api, worker)]
            cpu = [cpu_ms(p) for p in stack]
            for n in range(args.requests):
                picture = pictures[n % 64]
                api_ms += timed(lambda p=picture: replies.append(via_api(http, model_id, [p], args.imgsz)), 1)
                started = time.process_time()
                direct_ms += timed(lambda p=picture: direct(model, [p], args.imgsz), 1)
                direct_cpu += (time.process_time() - started) * 1000 / args.requests
            api_cpu, worker_cpu = ((cpu_ms(p) - c) / args.requests for p, c in zip(stack, cpu, strict=True))
            floor_http, floor_celery, floor_api_cpu, floor_worker_cpu = floor(
                floor_port,
                redis_server.url,
                pictures,
                args.requests,
                psutil.Process(floor_api.pid),
                psutil.Process(floor_worker.pid),
            )
            api_batch = timed(lambda: via_api(http, model_id, pictures, args.imgsz), 3)
            direct_batch = timed(lambda: direct(model, pictures, args.imgsz), 3)
            # Where the worker's edge on a batch comes from: it predicts in batches of 16 (the default
            # TRAINYARD_INFERENCE_BATCH) and decodes the next batch meanwhile. The same batches here:
            direct_16 = timed(
                lambda: [direct(model, pictures[i : i + 16], args.imgsz) for i in range(0, 64, 16)], 3
            )
    finally:
        redis_server.stop()

    api_p50, direct_p50 = statistics.median(api_ms), statistics.median(direct_ms)
    print(
        # Ultralytics' own CPU default (select_device), in the worker as here.
        f"YOLO11n, CPU ({torch.get_num_threads()} torch threads), imgsz {args.imgsz}, "
        f"{args.requests} single-image requests, 640x480 JPEG"
    )
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'REST -> queue -> worker':28}{api_p50:10.2f}{percentile(api_ms, 99):10.2f}")
    print(f"{'direct model.predict':28}{direct_p50:10.2f}{percentile(direct_ms, 99):10.2f}")
    print(f"p50 overhead {api_p50 - direct_p50:+.2f} ms, ratio {api_p50 / direct_p50:.3f}")
    print(
        f"floor of any such path here, p50: bare FastAPI multipart upload {floor_http:.2f} ms + "
        f"raw Celery round trip {floor_celery:.2f} ms = {floor_http + floor_celery:.2f} ms"
    )
    print(
        f"CPU ms per request: API {api_cpu:.2f}, worker {worker_cpu:.2f} (direct predict {direct_cpu:.2f}: "
        f"worker beyond it {worker_cpu - direct_cpu:+.2f}); floor: bare upload API {floor_api_cpu:.2f}, "
        f"raw Celery worker {floor_worker_cpu:.2f}"
    )
    stages = {k: statistics.median(r["timing_ms"][k] for r in replies) for k in replies[0]["timing_ms"]}
    print("worker-reported stages, p50 ms: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    api_ips = 64 / (min(api_batch) / 1000)
    direct_ips = 64 / (min(direct_batch) / 1000)
    direct_16_ips = 64 / (min(direct_16) / 1000)
    print(
        f"batch of 64 (best of 3): REST {api_ips:.1f} images/s, direct {direct_ips:.1f} images/s, "
        f"ratio {api_ips / direct_ips:.3f}"
    )
    print(
        f"direct in 4 calls of 16 images: {direct_16_ips:.1f} images/s "
        f"(REST ratio to it {api_ips / direct_16_ips:.3f})"
    )
    floor_ms = direct_p50 + floor_http + floor_celery
    emit(
        "inference",
        [
            {
                "measure": "one image, p50 vs direct predict",
                "value": api_p50,
                "baseline": direct_p50,
                "unit": "ms",
            },
            {
                "measure": "one image, p50 vs predict + floor",
                "value": api_p50,
                "baseline": floor_ms,
                "unit": "ms",
            },
            {
                "measure": "batch of 64, s/image",
                "value": 1 / api_ips,
                "baseline": 1 / direct_ips,
                "unit": "s",
            },
        ],
        baseline="direct model.predict (+ bare FastAPI upload + raw Celery round trip)",
    )


if __name__ == "__main__":
    main()
