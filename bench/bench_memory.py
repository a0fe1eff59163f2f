"""Memory of an idle `trainyard serve` on the embedded defaults: the resident size (RSS) of each of its
processes (supervisor, API, worker, the worker's spare trainer process, scheduler, bundled Redis) once
the stack has settled, against a bare Python interpreter measured in the same run; the whole stack's
proportional size (PSS: shared pages counted once) but the spare trainer against the 350 MB goal; and
the spare trainer (torch and Ultralytics imported; TRAINYARD_WARM_TRAINER) against the idle worker.

    .venv/bin/python bench/bench_memory.py [--settle 10] [--keep]
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.suite import embedded_workdir, emit
from tests.support.stack import TRAINYARD, free_port, stop, wait_for

GOAL_MB = 350.0
SPARE = "spare trainer"
MB = 2**20


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds idle before measuring")
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
            settled(supervisor)
            processes = [supervisor, *supervisor.children(recursive=True)]
            sizes = [(role(p), rss_mb(p), pss_mb(p)) for p in processes]
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
    if SPARE in pss:
        rows.append(
            {
                "measure": "idle PSS, spare trainer process vs the idle worker",
                "value": round(pss[SPARE], 1),
                "baseline": round(pss["worker"], 1),
                "unit": "MB",
            }
        )
    emit("memory", rows, "a bare Python interpreter (per process); the 350 MB goal (whole stack)")


if __name__ == "__main__":
    main()
