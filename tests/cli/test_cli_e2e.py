"""The CLI against a real stack (`trainyard serve`: API, a CPU worker and the scheduler on the bundled
Redis): what a person typing the commands sees, and the exit codes scripts rely on."""

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.cli.client import ApiClient
from app.cli.demo import shapes_zip
from tests.factories import make_yolo_dataset
from tests.support.stack import TRAINYARD, embedded_serve, free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class Stack:
    def __init__(self, url: str, key: str, log: Path, storage: Path, serve: subprocess.Popen[bytes]) -> None:
        self.url, self.key, self.log, self.storage, self.serve = url, key, log, storage, serve
        self.api = ApiClient(url, key)

    def run(self, *args: str, columns: int = 100, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "TRAINYARD_API_URL": self.url,
            "TRAINYARD_API_KEY": self.key,
            "COLUMNS": str(columns),
        }
        return subprocess.run([*TRAINYARD, *args], env=env, capture_output=True, text=True, timeout=timeout)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("cli") / "data"
    with embedded_serve(data, tmp_path_factory.getbasetemp()) as (url, key, serve):
        yield Stack(url, key, data.parent / "serve.log", data / "storage", serve)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_yolo_dataset(tmp_path_factory.mktemp("cli-data") / "shapes", train=8, val=2, size=64)


def submit(stack: Stack, name: str, dataset: Path, epochs: int) -> dict[str, Any]:
    result = stack.run(
        "jobs", "submit", "--name", name, "--project", "cli", "--dataset", str(dataset), "--task", "detect",
        "--epochs", str(epochs), "--set", "imgsz=64", "--set", "batch=4", "--set", "workers=0",
        "--set", "plots=false", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job: dict[str, Any] = json.loads(result.stdout)
    assert job["task_type"] == "detection" and job["config"]["imgsz"] == 64
    return job


def test_api_down_is_one_line_naming_the_url_and_exit_5() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["jobs", "list"], ["jobs", "watch", "1"], ["models", "list", "--json"]):
        result = subprocess.run(
            [*TRAINYARD, *command, "--api", url], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 5, result.stderr
        assert result.stdout == "" and "Traceback" not in result.stderr
        first, *rest = result.stderr.strip().splitlines()
        assert url in first and len(rest) <= 1 and "TRAINYARD_API_URL" in result.stderr


def test_keys_without_a_database_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "TRAINYARD_DATA_DIR": str(tmp_path / "nowhere"), "DATABASE_URL": ""}
    result = subprocess.run([*TRAINYARD, "keys", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 5 and "Traceback" not in result.stderr
    assert "trainyard db upgrade" in result.stderr and len(result.stderr.strip().splitlines()) == 2


def test_not_found_and_bad_usage_have_their_own_codes(stack: Stack, shapes: Path) -> None:
    missing = stack.run("jobs", "show", "424242")
    assert missing.returncode == 6 and "424242" in missing.stderr and "Traceback" not in missing.stderr
    bad_name = stack.run("jobs", "submit", "--name", "no/slash", "--project", "cli", "--dataset", str(shapes))
    assert bad_name.returncode == 2 and "name" in bad_name.stderr and "Traceback" not in bad_name.stderr
    bad_set = stack.run(
        "jobs", "submit", "--name", "x", "--project", "cli", "--dataset", str(shapes), "--set", "e"
    )
    assert bad_set.returncode == 2 and "key=value" in bad_set.stderr
    wrong_key = subprocess.run(
        [*TRAINYARD, "jobs", "list", "--api", stack.url, "--api-key", "ty_wrong"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert wrong_key.returncode == 6 and "TRAINYARD_API_KEY" in wrong_key.stderr


def test_preflight_shows_the_resolved_config_and_refuses_with_reasons(stack: Stack, shapes: Path) -> None:
    ok = stack.run(
        "jobs", "preflight", "--name", "pre", "--project", "cli", "--dataset", str(shapes), "--epochs", "3"
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "epochs: 3" in ok.stdout and "would be accepted" in ok.stdout
    refused = stack.run(
        "jobs", "preflight", "--name", "pre", "--project", "cli", "--dataset", "nowhere/at/all"
    )
    assert refused.returncode == 2 and "dataset_path" in refused.stdout
    as_json = stack.run(
        "jobs", "preflight", "--name", "pre", "--project", "cli", "--dataset", str(shapes), "--json"
    )
    assert json.loads(as_json.stdout)["ok"] is True


def test_stop_resume_watch_reports_completed_and_each_outcome_its_code(stack: Stack, shapes: Path) -> None:
    # Long enough that a stop (seen at the worker's next heartbeat) lands before the last epoch.
    job = submit(stack, "long", shapes, epochs=40)
    waiting = submit(stack, "waiting", shapes, epochs=1)  # one worker: this one stays queued
    listed = json.loads(stack.run("jobs", "list", "--project", "cli", "--json").stdout)["items"]
    first, queued = (next(j for j in listed if j["id"] == i) for i in (job["id"], waiting["id"]))
    ahead = 1 if first["status"] == "queued" else 0  # one list, one snapshot: the worker took it or not
    assert queued["status"] == "queued" and queued["queue_position"] == ahead
    table = stack.run("jobs", "list", "--project", "cli", columns=200).stdout
    assert re.search(rf"{waiting['id']} .*waiting.* queued \((1 ahead|next)\)", table), table

    cancel = stack.run("jobs", "cancel", str(waiting["id"]))
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout
    watched = stack.run("jobs", "watch", str(waiting["id"]))
    assert watched.returncode == 4 and "cancelled" in watched.stdout

    wait_until(lambda: stack.api.get_job(job["id"])["current_epoch"] >= 1, "first epoch", stack.logs, 180)
    assert stack.api.get_job(job["id"])["current_epoch"] < 30, "the job ran too fast to be stopped mid-run"
    assert stack.run("jobs", "stop", str(job["id"])).returncode == 0
    stopped = stack.run("jobs", "watch", str(job["id"]))
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert (
        f"job {job['id']} stopped" in stopped.stdout
        and f"trainyard jobs resume {job['id']}" in stopped.stdout
    )

    resumed = stack.run("jobs", "resume", str(job["id"]), "--json")
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["attempt"] == 2
    narrow = stack.run("jobs", "watch", str(job["id"]), columns=50)
    assert narrow.returncode == 0, narrow.stdout + narrow.stderr + stack.logs()[-3000:]
    lines = narrow.stdout.splitlines()
    live = [line for line in lines if line.startswith(f"job {job['id']} ") and "after" not in line]
    assert live and all(len(line) <= 50 for line in live), live
    assert any("(attempt 2)" in line and "epoch" in line for line in live), live
    summary = lines[next(i for i, line in enumerate(lines) if "completed after" in line) :]
    assert summary[0] == f"job {job['id']} completed after 40/40 epochs"
    model_id = int(re.search(r"model: (\d+)", narrow.stdout).group(1))  # type: ignore[union-attr]
    assert f"trainyard models deploy {model_id}" in narrow.stdout and "weights/best.pt" in narrow.stdout
    assert narrow.stdout.count("completed after") == 1

    shown = json.loads(stack.run("models", "show", str(model_id), "--json").stdout)
    assert shown["lineage"]["job_id"] == job["id"]
    (worker,) = json.loads(stack.run("workers", "list", "--json").stdout)["items"]
    ran_on = f"{worker['host']} (worker {worker['id']})"
    described = stack.run("jobs", "show", str(job["id"]), columns=200).stdout
    assert f"attempt 1: {ran_on}, stopped" in described and f"attempt 2: {ran_on}, completed" in described
    listed = json.loads(stack.run("jobs", "list", "--project", "cli", "--json").stdout)
    assert {j["status"] for j in listed["items"]} >= {"completed", "cancelled"}


def test_a_job_failing_in_the_worker_exits_1(stack: Stack, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    for split in ("train", "val"):
        (empty / "images" / split).mkdir(parents=True)
    (empty / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: a}\n")
    job = submit(stack, "empty", empty, epochs=1)
    failed = stack.run("jobs", "watch", str(job["id"]))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "failed" in failed.stdout and "error:" in failed.stdout
    logs = stack.run("jobs", "logs", str(job["id"]), "--follow")  # a finished job: replayed, then it ends
    assert logs.returncode == 0 and logs.stdout.rstrip().endswith("-- failed"), logs.stdout


def test_demo_trains_registers_and_predicts_in_one_command(stack: Stack) -> None:
    demo = stack.run("demo", timeout=900)
    assert demo.returncode == 0, demo.stdout + demo.stderr + stack.logs()[-3000:]
    assert "uploading a synthetic dataset" in demo.stdout
    assert "completed after 30/30 epochs" in demo.stdout, demo.stdout
    # Seeded and deterministic on a CPU: the same model every run (3 runs: mAP50 0.995, 1 of 1 found).
    best = float(re.search(r"best: mAP50 ([0-9.]+)", demo.stdout).group(1))  # type: ignore[union-attr]
    assert best > 0.8, demo.stdout
    held, found = re.search(r"holds (\d+) shape\(s\); the model found (\d+)", demo.stdout).groups()  # type: ignore[union-attr]
    assert found == held, demo.stdout  # every shape of the image, its colour and where it is
    model_id = int(re.search(r"trainyard predict --model (\d+) IMAGE", demo.stdout).group(1))  # type: ignore[union-attr]
    model = stack.api.get_model(model_id)
    assert model["status"] == "ready" and model["project"] == "demo"
    # The dataset is in the storage root, where any job of the project can use it.
    datasets = json.loads(stack.run("datasets", "list", "--project", "demo", "--json").stdout)["datasets"]
    assert (stack.storage / datasets[0]["storage_path"]).is_dir()
    shown = stack.run("datasets", "show", str(datasets[0]["id"]))
    assert shown.returncode == 0 and "40 images (train 32, val 8, test 0)" in shown.stdout, shown.stdout
    (version,) = json.loads(stack.run("versions", "list", "--project", "demo", "--json").stdout)["versions"]
    vid = str(version["id"])
    same = json.loads(stack.run("versions", "diff", vid, vid, "--project", "demo", "--json").stdout)
    assert same["images_added"] == same["images_removed"] == []
    workers = json.loads(stack.run("workers", "list", "--json").stdout)["items"]
    assert [w["status"] for w in workers] == ["online"]


def test_upload_a_zip_export_best_and_roll_back_from_the_terminal(stack: Stack, tmp_path: Path) -> None:
    """After the demo (above): the demo project has a ready, deployed model."""
    archive, _sample = shapes_zip(train=8, val=2, size=64)
    (tmp_path / "more.zip").write_bytes(archive)
    upload = stack.run(
        "datasets", "upload", str(tmp_path / "more.zip"), "--project", "demo", "--name", "more"
    )
    assert upload.returncode == 0, upload.stdout + upload.stderr
    listed = json.loads(stack.run("datasets", "list", "--project", "demo", "--json").stdout)["datasets"]
    (more,) = [d for d in listed if d["name"] == "more"]
    assert (stack.storage / more["storage_path"]).is_dir()
    models = json.loads(stack.run("models", "list", "--project", "demo", "--json").stdout)["items"]
    exported = json.loads(stack.run("models", "export-best", str(models[0]["id"]), "--json").stdout)
    assert (stack.storage / exported["exported_key"]).is_file()
    rollback = stack.run("models", "rollback", "--project", "demo", "--task", "detect")
    assert rollback.returncode in (0, 2), rollback.stdout + rollback.stderr  # 2: nothing to roll back to
    assert "Traceback" not in rollback.stderr


def test_serve_says_where_everything_is_once_the_api_listens(stack: Stack) -> None:
    printed = stack.logs()
    assert printed.count("Trainyard is up") == 1
    assert f"dashboard  {stack.url}/" in printed and f"API        {stack.url}/api/v1" in printed
    assert f"export TRAINYARD_API_URL={stack.url}" in printed  # not the default port
    assert printed.count("database ready (migration") == 1 and "Running upgrade" not in printed
    assert "setup plugin" not in printed  # Alembic's plugin records
    # No Celery ASCII banner or root warning at every start: one line per worker says it is up.
    assert "[queues]" not in printed and "superuser privileges" not in printed
    assert "is up, consuming training,inference" in printed
    # The scheduler's routine ticks (one every few seconds) are not logged.
    assert "Sending due task reconcile" not in printed and "Task trainyard.reconcile[" not in printed


def children_of(pid: int) -> dict[int, str]:
    found = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found[int(child)] = Path(f"/proc/{child}/cmdline").read_text().replace("\0", " ")
    return found


def test_a_dead_worker_is_restarted_and_the_api_keeps_serving(stack: Stack) -> None:
    (worker,) = [pid for pid, command in children_of(stack.serve.pid).items() if " worker " in command]
    os.kill(worker, signal.SIGKILL)
    wait_until(
        lambda: "worker-cpu exited with code -9; restarting it" in stack.logs(), "restart planned", stack.logs
    )
    assert stack.run("jobs", "list").returncode == 0  # the API did not go down with it
    wait_until(
        lambda: [p for p, c in children_of(stack.serve.pid).items() if " worker " in c and p != worker],
        "a new worker process",
        stack.logs,
    )
    assert stack.serve.poll() is None


def test_a_drained_worker_shows_draining_and_takes_no_new_job(stack: Stack, shapes: Path) -> None:
    """Last: the stack's only worker takes no job after this."""

    # Drain the worker once its consumer is up (a restarted one, after the test above, misses a drain
    # sent before it listens).
    def worker_up() -> bool:
        logs = stack.logs()
        return logs.count("is up, consuming") == logs.count("restarting it") + 1

    wait_until(worker_up, "the worker up", stack.logs)
    (worker,) = json.loads(stack.run("workers", "list", "--json").stdout)["items"]
    drained = stack.run("workers", "drain", worker["id"])
    assert drained.returncode == 0 and drained.stdout.strip() == f"worker {worker['id']} draining"
    listed = stack.run("workers", "list", columns=200)
    assert re.search(rf"{worker['id']} .* draining", listed.stdout), listed.stdout
    # Its caches and the free space of its disk, in sizes a person reads.
    size = r"(\d+ B|\d+\.\d [KMGTP]B)"
    assert re.search(rf"draining\b.*\b{size}\b.*\b{size}", listed.stdout), listed.stdout
    job = submit(stack, "after drain", shapes, epochs=1)
    time.sleep(5)  # an idle worker would have taken it by now (this can only miss a fault, not invent one)
    shown = json.loads(stack.run("jobs", "show", str(job["id"]), "--json").stdout)
    assert shown["status"] == "queued" and shown["queue_position"] == 0
    assert stack.run("jobs", "cancel", str(job["id"])).returncode == 0
