"""Every benchmark still runs: `bench/run.py --smoke NAME` runs it end to end at a tiny size (its real
processes, databases and Redis, as `make bench` does) and fails unless it exits 0 and reports its rows.
The figures of a smoke run mean nothing; `make bench` measures."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import SMOKE, every_bench

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_every_bench_has_a_smoke_size() -> None:
    assert sorted(SMOKE) == every_bench()


@pytest.mark.parametrize("name", every_bench())
def test_bench_runs(name: str) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"{name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
