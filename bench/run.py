"""`make bench`: every benchmark in bench/, each with its baseline in the same run, then one table of
ratios (value / baseline), also written to bench/results/latest.json with the machine it ran on.

    .venv/bin/python bench/run.py [bench_fanout ...]
    .venv/bin/python bench/run.py --markdown    # the last results as the README's table
    .venv/bin/python bench/run.py --smoke [bench_fanout ...]

`--smoke` runs each bench at a size that proves it still runs end to end and reports its rows (seconds,
not minutes; its figures mean nothing and are not written): tests/test_benches.py runs it for every bench,
so a change that breaks one fails the suite instead of the next `make bench`.

Each bench runs as its own process, exactly as when run by hand; its output passes through, and its
`BENCH-RESULT` line (bench/suite.py) is collected. A bench that fails is reported, the rest still run.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.suite import MARKER, load_average

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "latest.json"
# Each bench's smallest run that still goes through every one of its phases.
SMOKE = {
    "bench_augment": ["--images", "16", "--rounds", "1"],
    "bench_convert": ["--images", "50"],
    "bench_dashboard": ["--jobs", "30", "--events", "20", "--runs", "3"],
    "bench_dashboard_live": ["--events", "20"],
    "bench_dataset_cache": ["--images", "40", "--repeats", "1", "--no-train"],
    "bench_fanout": ["--clients", "20"],
    "bench_freeze": ["--images", "50"],
    "bench_inference": ["--requests", "5"],
    "bench_memory": ["--settle", "1", "--models", "1"],
    "bench_recovery": ["--runs", "1"],
    "bench_relay": ["--events", "60", "--burst", "20"],
    "bench_scheduling": ["--jobs", "200", "--decisions", "20"],
    "bench_submissions": ["--submissions", "40"],
    "bench_training": ["--rounds", "1"],
}


def every_bench() -> list[str]:
    return sorted(p.stem for p in BENCH.glob("bench_*.py"))


def run_one(name: str, args: list[str] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(BENCH / f"{name}.py"), *(args or [])],
        stdout=subprocess.PIPE,
        text=True,
        cwd=BENCH.parent,
    )
    assert process.stdout is not None
    results = []
    for line in process.stdout:
        if line.startswith(MARKER):
            results.append(json.loads(line[len(MARKER) :]))
        else:
            print(line, end="", flush=True)
    code = process.wait()
    seconds = round(time.monotonic() - started, 1)
    rows = [
        {"bench": r["bench"], "baseline_name": r["baseline"], "seconds": seconds, **row}
        for r in results
        for row in r["rows"]
    ]
    return rows, None if code == 0 and rows else f"{name}: exit code {code}, {len(rows)} rows"


def markdown(report: dict[str, Any]) -> str:
    """The README's table of a report: the machine and load it ran at, then each bench's baseline and its
    rows (value / baseline = ratio)."""
    machine = report["machine"]
    lines = [
        f"Finished {report['ran_at'][:16].replace('T', ' ')} UTC; {machine['cpus']} cores"
        f" ({machine['processor']}), {machine['platform']}, Python {machine['python']}; load average"
        f" {machine.get('load', '?')} before and {machine.get('load_after', '?')} after.",
        "",
        "| measure | value | baseline | ratio |",
        "|---|---:|---:|---:|",
    ]
    shown = None
    for row in report["rows"]:
        if (row["bench"], row["baseline_name"]) != shown:
            shown = (row["bench"], row["baseline_name"])
            lines.append(f"| **{row['bench']}** (baseline: {row['baseline_name']}) | | | |")
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        lines.append(
            f"| {row['measure']} ({row['unit']}) | {row['value']:,.2f} | {row['baseline']:,.2f} | {ratio} |"
        )
    lines += [f"| FAILED: {failure} | | | |" for failure in report["failures"]]
    return "\n".join(lines)


def processor() -> str:
    """The CPU's model name (platform.processor() is empty on most Linux systems)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def smoke(names: list[str]) -> int:
    """Each bench at its smoke size; the exit code: 1 if one fails or reports no rows."""
    failures = []
    for name in names:
        print(f"=== {name} (smoke)", flush=True)
        rows, failure = run_one(name, SMOKE[name])
        if failure:
            failures.append(failure)
        else:
            print(f"{name}: {len(rows)} rows", flush=True)
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("benches", nargs="*", help="bench names (default: every bench_*.py)")
    parser.add_argument("--markdown", action="store_true", help="print the last results as a table")
    parser.add_argument("--smoke", action="store_true", help="check that each bench runs, at a tiny size")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(RESULTS.read_text())))
        return
    names = args.benches or every_bench()
    if args.smoke:
        sys.exit(smoke(names))
    load = load_average()
    rows: list[dict[str, Any]] = []
    failures = []
    for name in names:
        print(f"=== {name}", flush=True)
        found, failure = run_one(name)
        rows += found
        if failure:
            failures.append(failure)
    for row in rows:
        row["ratio"] = round(row["value"] / row["baseline"], 3) if row["baseline"] else None
    print(f"\n{'bench':10} {'measure':52} {'value':>10} {'baseline':>10} {'ratio':>8}  baseline is")
    for row in rows:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        print(
            f"{row['bench']:10} {row['measure'] + ' (' + row['unit'] + ')':52} {row['value']:10.2f}"
            f" {row['baseline']:10.2f} {ratio:>8}  {row['baseline_name']}"
        )
    for failure in failures:
        print(f"FAILED {failure}")
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": processor(),
        "load": load,
        "load_after": load_average(),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    report = {"ran_at": datetime.now(UTC).isoformat(), "machine": machine, "rows": rows, "failures": failures}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(BENCH.parent)}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
