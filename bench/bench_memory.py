"""Memory of an idle `trainyard serve` on the embedded defaults: the resident size (RSS) of each of its
processes (supervisor, API, worker, the worker's spare trainer process, scheduler, bundled Redis) once
the stack has settled, against a bare Python interpreter measured in the same run; the whole stack's
proportional size (PSS: shared pages counted once) but the spare trainer against the 350 MB goal; and
the spare trainer (torch and Ultralytics imported; TRAINYARD_WARM_TRAINER) against the idle worker.

Then the same worker with 1 and then `--models` (4) models warm, each loaded by one inference request
(YOLO11n, untrained weights from yolo11n.yaml, each registered as a model of its own), beside its spare
trainer: both processes' PSS and RSS once settled, against the idle worker measured before.

    .venv/bin/python bench/bench_memory.py [--settle 10] [--models 4] [--keep]
"""

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.db import Database
from bench.suite import embedded_workdir, emit
from tests.support.stack import TRAINYARD, free_port, stop, wait_for

GOAL_MB = 350.0
SPARE = "spare trainer"
MB = 2**20
IMGSZ = 320
Sizes = list[tuple[str, float, float]]  # (role, RSS MB, PSS MB) per process
Footprint = tuple[float, float, float]  # RSS, PSS, USS MB


def rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / MB


def pss_mb(process: psutil.Process) -> float:
    """Proportional set size: pages shared with another process (a forked pool child shares most of
    its parent's) count for each in proportion, so the sum over the stack is what it costs."""
    return float(process.memory_full_info().pss) / MB


def bare_python_mb() -> float:
    """An interpreter that imports nothing: the floor under every Python process of the stack."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(1)
        return rss_mb(psutil.Process(child.pid))
    finally:
        child.kill()
        child.wait()


def role(process: psutil.Process) -> str:
    command = " ".join(process.cmdline())
    if "workers.trainer_host" in command:
        return SPARE
    if "app.cli.serve" in command:
        return "supervisor"
    for name in ("api", "worker", "scheduler"):
        if f"app.cli.main {name}" in command:
            return name
    return "redis" if "redis" in process.name() else process.name()


def settled(supervisor: psutil.Process, timeout: float = 120.0) -> None:
    """Wait until no process of the stack is busy (a spare trainer spends seconds on its imports)."""
    deadline = time.monotonic() + timeout
    busy = True
    while busy and time.monotonic() < deadline:
        processes = [supervisor, *supervisor.children(recursive=True)]
        before = [sum(p.cpu_times()[:2]) for p in processes]
        time.sleep(2)
        busy = any(sum(p.cpu_times()[:2]) - b > 0.2 for p, b in zip(processes, before, strict=True))


def measure(supervisor: psutil.Process) -> Sizes:
    settled(supervisor)
    processes = [supervisor, *supervisor.children(recursive=True)]
    return [(role(p), rss_mb(p), pss_mb(p)) for p in processes]


def register_models(work: Path, count: int) -> tuple[str, list[int]]:
    """An admin key and `count` models registered in the stack's database (the same untrained YOLO11n
    weights, each stored for a model of its own)."""
    # Imported once the stack runs: tests.conftest turns the spare trainer off for processes started later.
    from tests.conftest import make_api_key
    from tests.factories import register_untrained_model
    from workers.ultralytics.offline import prepare_offline

    prepare_offline(work / "ultralytics")
    from ultralytics import YOLO

    weights = work / "yolo11n.pt"
    YOLO("yolo11n.yaml").save(weights)
    data = Path(os.environ["TRAINYARD_DATA_DIR"])
    db = Database(f"sqlite:///{data / 'trainyard.db'}")
    try:
        key = make_api_key(db)
        with db.session() as session:
            ids = [
                register_untrained_model(session, data / "storage", weights, "bench", f"yolo11n-{i}", IMGSZ)
                for i in range(count)
            ]
    finally:
        db.dispose()
    return key, ids


def warm(port: int, key: str, model_ids: list[int]) -> None:
    """Each model loaded into the worker's cache by one inference request."""
    picture = io.BytesIO()
    Image.effect_noise((640, 480), 40).convert("RGB").save(picture, "JPEG")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=300) as http:
        for model_id in model_ids:
            response = http.post(
                "/api/v1/inference",
                files=[("files", ("0.jpg", picture.getvalue(), "image/jpeg"))],
                data={"model_id": str(model_id), "imgsz": str(IMGSZ)},
            )
            response.raise_for_status()


def footprint(supervisor: psutil.Process) -> dict[str, Footprint]:
    """RSS, PSS and USS (the pages of the process alone) per role. USS is what the process frees when it
    exits; unlike PSS it does not move with other processes that map the same libraries (on a shared
    machine, other stacks' torch)."""
    sizes: dict[str, Footprint] = {}
    for process in [supervisor, *supervisor.children(recursive=True)]:
        info = process.memory_full_info()
        sizes[role(process)] = (info.rss / MB, info.pss / MB, info.uss / MB)
    return sizes


def warm_rows(models: int, idle: dict[str, Footprint], warm: dict[str, Footprint]) -> list[dict[str, object]]:
    """The worker (and its spare trainer) with `models` warm, against the idle worker."""
    print(f"with {models} model(s) warm {'RSS MB':>8} {'PSS MB':>8} {'USS MB':>8}")
    rows: list[dict[str, object]] = []
    for name in ("worker", SPARE):
        if name not in warm:
            continue
        print(f"{name:20} " + " ".join(f"{size:8.1f}" for size in warm[name]))
        for kind, value, baseline in zip(("RSS", "PSS", "USS"), warm[name], idle["worker"], strict=True):
            measure = f"{models} warm model(s), {kind}, {name} process vs the idle worker"
            rows.append(
                {"measure": measure, "value": round(value, 1), "baseline": round(baseline, 1), "unit": "MB"}
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds idle before measuring")
    parser.add_argument("--models", type=int, default=4, help="models warmed in the worker afterwards")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    with embedded_workdir("trainyard-bench-memory-", None, args.keep) as work:
        port = free_port()
        log = work / "serve.log"
        with log.open("wb") as out:
            serve = subprocess.Popen(
                [*TRAINYARD, "serve", "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(f"http://127.0.0.1:{port}/health", log, timeout=120, workers=1)
            time.sleep(args.settle)
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
            supervisor = psutil.Process(serve.pid)
            sizes = measure(supervisor)
            idle = footprint(supervisor)
            key, ids = register_models(work, args.models)
            warm(port, key, ids[:1])
            settled(supervisor)
            one = footprint(supervisor)
            warm(port, key, ids[1:])
            settled(supervisor)
            loaded = footprint(supervisor)
        finally:
            stop(serve)
    floor = bare_python_mb()
    total = sum(pss for name, _, pss in sizes if name != SPARE)
    pss = {name: pss for name, _, pss in sizes}
    print(f"{'process':14} {'RSS MB':>8} {'PSS MB':>8}")
    for name, rss, size in sizes:
        print(f"{name:14} {rss:8.1f} {size:8.1f}")
    print(f"{'total':14} {'':8} {total:8.1f}   but the spare trainer (goal {GOAL_MB:.0f})")
    print(f"bare python: {floor:.1f} MB RSS")
    rows = [
        {"measure": f"idle RSS, {name}", "value": round(rss, 1), "baseline": round(floor, 1), "unit": "MB"}
        for name, rss, _ in sizes
    ]
    rows.append(
        {
            "measure": "idle PSS, whole stack but the spare trainer vs the goal",
            "value": round(total, 1),
            "baseline": GOAL_MB,
            "unit": "MB",
        }
    )
    print(f"{'idle worker':20} " + " ".join(f"{size:8.1f}" for size in idle["worker"]))
    rows += warm_rows(1, idle, one) + warm_rows(args.models, idle, loaded)
    if SPARE in pss:
        rows.append(
            {
                "measure": "idle PSS, spare trainer process vs the idle worker",
                "value": round(pss[SPARE], 1),
                "baseline": round(pss["worker"], 1),
                "unit": "MB",
            }
        )
    emit("memory", rows, "as each measure names: a bare interpreter, the 350 MB goal or the idle worker")


if __name__ == "__main__":
    main()
