"""TrainerSDK: transports picked from the environment, and the log buffering rules (flush at 50 entries,
every few seconds, at once on ERROR; a failed flush never stops training and loses nothing)."""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trainyard_sdk import TrainerContext
from trainyard_sdk import sdk as sdk_module
from trainyard_sdk.context import ENV_VARS
from trainyard_sdk.reports import ProgressReport, Report
from trainyard_sdk.sdk import (
    FLUSH_AT_ENTRIES,
    FLUSH_EVERY_SECONDS,
    HttpTransport,
    PipeTransport,
    ReportRefused,
    TrainerSDK,
)


class Recording:
    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def send(self, report: Report) -> None:
        with self.lock:
            self.reports.append(report.model_dump(mode="json"))

    def logs(self) -> list[str]:
        with self.lock:
            return [e["message"] for r in self.reports if r["type"] == "log" for e in r["logs"]]

    def batches(self) -> list[int]:
        with self.lock:
            return [len(r["logs"]) for r in self.reports if r["type"] == "log"]


class Failing(Recording):
    """Refuses log batches while `down` is set; other reports go through."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()
        self.down.set()
        self.attempts = 0

    def send(self, report: Report) -> None:
        if report.type == "log":
            self.attempts += 1
            if self.down.is_set():
                raise ConnectionError("the API is away")
        super().send(report)


def eventually(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


@pytest.fixture
def make_sdk() -> Iterator[Callable[..., TrainerSDK]]:
    made: list[TrainerSDK] = []

    def make(transport: Any, flush_every: float = 60.0) -> TrainerSDK:
        made.append(TrainerSDK(transport, flush_every=flush_every))
        return made[-1]

    yield make
    for sdk in made:
        sdk._closed.set()
        sdk._wake.set()


def test_the_documented_defaults() -> None:
    assert (FLUSH_AT_ENTRIES, FLUSH_EVERY_SECONDS) == (50, 5.0)
    assert TrainerSDK(Recording()).flush_every == 5.0


def test_entries_wait_until_fifty_then_go_as_one_batch(make_sdk: Callable[..., TrainerSDK]) -> None:
    transport = Recording()
    sdk = make_sdk(transport)
    for i in range(FLUSH_AT_ENTRIES - 1):
        sdk.log_info(f"line {i}")
    time.sleep(0.2)
    assert transport.reports == []
    sdk.log_info("line 49")
    assert eventually(lambda: transport.batches() == [50])
    assert transport.logs() == [f"line {i}" for i in range(50)]


def test_an_error_goes_out_at_once_with_what_came_before(make_sdk: Callable[..., TrainerSDK]) -> None:
    transport = Recording()
    sdk = make_sdk(transport)
    sdk.log_info("loading")
    sdk.log_warning("slow disk", disk="sda")
    sdk.log_error("boom")
    assert eventually(lambda: transport.logs() == ["loading", "slow disk", "boom"], timeout=1.0)
    entry = transport.reports[0]["logs"][1]
    assert (entry["level"], entry["metadata"], entry["source"]) == ("WARNING", {"disk": "sda"}, "trainer")


def test_a_quiet_trainer_is_flushed_periodically(make_sdk: Callable[..., TrainerSDK]) -> None:
    transport = Recording()
    sdk = make_sdk(transport, flush_every=0.3)
    sdk.log_info("one line")
    assert transport.reports == []
    assert eventually(lambda: transport.logs() == ["one line"], timeout=2.0)


def test_a_failed_flush_never_stops_training_and_loses_nothing(make_sdk: Callable[..., TrainerSDK]) -> None:
    transport = Failing()
    sdk = make_sdk(transport, flush_every=0.2)
    started = time.monotonic()
    for i in range(120):
        sdk.log_info(f"line {i}")
        sdk.report_progress(1, 2)
    sdk.log_error("boom")
    assert time.monotonic() - started < 1.0, "logging blocked on a failing transport"
    assert eventually(lambda: transport.attempts >= 2)
    assert transport.logs() == []
    transport.down.clear()
    assert eventually(lambda: len(transport.logs()) == 121)
    assert transport.logs() == [f"line {i}" for i in range(120)] + ["boom"]
    assert sum(r["type"] == "progress" for r in transport.reports) == 120


def test_completion_is_sent_even_when_logs_cannot_be(make_sdk: Callable[..., TrainerSDK]) -> None:
    transport = Failing()
    sdk = make_sdk(transport)
    sdk.log_info("last words")
    sdk.report_completed({"epochs_completed": 1})
    assert [r["type"] for r in transport.reports] == ["completed"]


def test_completion_comes_after_every_buffered_entry(make_sdk: Callable[..., TrainerSDK]) -> None:
    transport = Recording()
    sdk = make_sdk(transport)
    sdk.log_info("a")
    sdk.report_completed({"epochs_completed": 1})
    assert [r["type"] for r in transport.reports] == ["log", "completed"]


def test_a_long_outage_keeps_only_the_newest_entries(
    make_sdk: Callable[..., TrainerSDK], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sdk_module, "MAX_BUFFERED", 100)
    transport = Failing()
    sdk = make_sdk(transport)
    for i in range(130):
        sdk.log_info(f"line {i}")
        if i % 10 == 9:
            sdk.flush()
    assert sdk.dropped == 30
    transport.down.clear()
    assert sdk.flush()
    assert transport.logs() == [f"line {i}" for i in range(30, 130)]


def test_close_sends_the_rest(make_sdk: Callable[..., TrainerSDK]) -> None:
    transport = Recording()
    sdk = make_sdk(transport)
    sdk.log_debug("bye")
    sdk.close()
    assert transport.logs() == ["bye"]


# -- from_env ------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("TRAINYARD_REPORT_FD", "CALLBACK_URL", "TRAINYARD_JOB_TOKEN", "CONFIG", "CONFIG_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOB_ID", "7")
    return monkeypatch


def test_from_env_uses_the_workers_pipe_when_given(clean_env: pytest.MonkeyPatch) -> None:
    read_fd, write_fd = os.pipe()
    clean_env.setenv("TRAINYARD_REPORT_FD", str(write_fd))
    clean_env.setenv("CALLBACK_URL", "http://127.0.0.1:9/api")  # the pipe wins
    clean_env.setenv("TRAINYARD_JOB_TOKEN", "t")
    clean_env.setenv("CONFIG", '{"epochs": 3, "mosaic": 0.5}')
    sdk = TrainerSDK.from_env()
    assert isinstance(sdk.transport, PipeTransport)
    assert (sdk.job_id, sdk.get_basic_config(), sdk.get_advanced_config()) == (
        7,
        {"epochs": 3},
        {"mosaic": 0.5},
    )
    sdk.report_progress(1, 3)
    sdk.close()
    with os.fdopen(read_fd) as reader:
        first = json.loads(reader.readline())
    assert first == {
        "type": "progress",
        "attempt": None,
        "epoch": 1,
        "epochs": 3,
        "batch": None,
        "batches": None,
        "eta_s": None,
        "phase": "train",
    }


def test_from_env_reports_over_http_without_a_pipe(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("CALLBACK_URL", "http://127.0.0.1:9/api/v1/training/jobs/7/callback")
    clean_env.setenv("TRAINYARD_JOB_TOKEN", "secret-token")
    config_path = tmp_path / "config.json"
    config_path.write_text('{"epochs": 9}')
    clean_env.setenv("CONFIG_PATH", str(config_path))
    sdk = TrainerSDK.from_env()
    assert isinstance(sdk.transport, HttpTransport)
    assert sdk.transport.callback_url.endswith("/jobs/7/callback")
    assert sdk.get_full_config() == {"epochs": 9}
    sdk._closed.set()


# -- HttpTransport -------------------------------------------------------------------------------


def http_transport(handler: Callable[[httpx.Request], httpx.Response]) -> HttpTransport:
    return HttpTransport("http://api/cb/", "tok", client=httpx.Client(transport=httpx.MockTransport(handler)))


def test_http_transport_maps_each_report_to_its_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None, dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("authorization"), json.loads(request.content)))
        return httpx.Response(200, json={"status": "ok"})

    sdk = TrainerSDK(http_transport(handler))
    sdk.report_started(pid=1)
    sdk.report_metrics(1, {"loss": 0.5}, {"acc": 0.9})
    sdk.report_checkpoint("best", "s3://b/best.pt", 1, {"acc": 0.9})
    sdk.report_failed("OOM", "out of memory")
    sdk.log_info("x")
    sdk.report_completed({"epochs_completed": 1}, artifacts={"results.csv": "/tmp/r.csv"})
    sdk.close()
    assert [path for path, _, _ in seen] == [
        "/cb/started",
        "/cb/metrics",
        "/cb/checkpoint",
        "/cb/completion",
        "/cb/log",
        "/cb/completion",
    ]
    assert {auth for _, auth, _ in seen} == {"Bearer tok"}
    # The protocol's own messages, as the callback API takes them (artifacts stay on the trainer's machine).
    assert seen[3][2] == {"type": "failed", "attempt": None, "error_code": "OOM", "message": "out of memory"}
    assert seen[5][2]["type"] == "completed" and "artifacts" not in seen[5][2]
    assert seen[5][2]["results"]["epochs_completed"] == 1
    assert seen[4][2]["logs"][0]["message"] == "x"


def test_http_transport_retries_server_errors_but_not_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk_module.time, "sleep", lambda _: None)
    answers = [503, 200, 409]
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(answers[0])
        return httpx.Response(answers.pop(0), json={"detail": "training job 1 is finished"})

    transport = http_transport(handler)
    transport.send(ProgressReport(epoch=1, epochs=2))
    assert calls == [503, 200]
    with pytest.raises(ReportRefused) as refused:
        transport.send(ProgressReport(epoch=2, epochs=2))
    assert refused.value.status == 409 and "finished" in str(refused.value)
    assert calls == [503, 200, 409]


# -- what the SDK is made of ----------------------------------------------------------------------


def test_the_sdk_imports_without_the_server_or_torch() -> None:
    """An outside trainer depends on trainyard_sdk alone: no FastAPI, SQLAlchemy or torch in sight."""
    check = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"fastapi", "starlette", "sqlalchemy", "torch", "app", "workers"}:
            raise ImportError(f"{name} is blocked")
        return None
sys.meta_path.insert(0, Blocked())
from trainyard_sdk import ReportType, TrainerContext, TrainerSDK
from trainyard_sdk.reports import parse_report
assert parse_report(b'{"type": "stopped"}').type == ReportType.STOPPED
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_progress_within_an_epoch_goes_out_at_most_once_a_second(
    make_sdk: Callable[..., TrainerSDK], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(sdk_module.time, "monotonic", lambda: clock[0])
    transport = Recording()
    sdk = make_sdk(transport)
    sent = []
    for batch in range(1, 21):  # 20 batches, 0.25 s apart
        sent.append(sdk.report_progress(1, 2, batch=batch, batches=20))
        clock[0] += 0.25
    sdk.report_progress(1, 2, batch=20, batches=20, phase="val")  # a new phase always goes
    sdk.report_progress(1, 2)  # the epoch's end always goes
    sdk.report_progress(2, 2, batch=1, batches=20)  # a new epoch too
    batches = [r["batch"] for r in transport.reports]
    assert batches == [1, 5, 9, 13, 17, 20, 20, None, 1]
    assert sent.count(True) == 6
    assert [r["phase"] for r in transport.reports][-3:] == ["val", "train", "train"]


def test_the_context_round_trips_through_the_environment(tmp_path: Path) -> None:
    context = TrainerContext(
        job_id=7,
        attempt=2,
        framework="ultralytics",
        task_type="detection",
        model_name="yolo11n",
        model_source="yolo11n.yaml",
        dataset_path=tmp_path / "data",
        device="0",
        run_dir=tmp_path / "run",
        resume_from=tmp_path / "run" / "resume" / "last.pt",
        config={"epochs": 3, "lr0": 0.01, "imgsz": 96, "batch": 8},
        report_fd=9,
        callback_url="http://api/cb",
        token="ty1.2.abc",
    )
    env = context.to_env()
    # The conveniences external trainers in other languages read.
    assert (env["EPOCHS"], env["BATCH_SIZE"], env["LEARNING_RATE"], env["IMGSZ"]) == ("3", "8", "0.01", "96")
    assert set(env) <= ENV_VARS
    assert TrainerContext.from_env(env) == context
    # A config too large for the environment travels in a file the worker wrote.
    big = {"names": ["x" * 100] * 400}
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(big))
    large = context.model_copy(update={"config": big, "config_path": config_file})
    assert not large.config_fits_env()
    assert "CONFIG" not in large.to_env()
    assert TrainerContext.from_env(large.to_env()).config == big


def test_numbers_of_any_library_go_out_as_json(make_sdk: Callable[..., TrainerSDK]) -> None:
    """numpy scalars become plain floats, and NaN or Infinity null: a report is always valid JSON."""
    import numpy as np

    transport = Recording()
    sdk = make_sdk(transport)
    sdk.report_metrics(1, {"loss": np.float32(0.5), "lr": np.float16(0.25)}, {"mAP50": float("nan")})
    sdk.report_progress(1, 2, eta_s=float("inf"))
    assert transport.reports[0]["train"] == {"loss": 0.5, "lr": 0.25}
    assert transport.reports[0]["val"] == {"mAP50": None}
    assert transport.reports[1]["eta_s"] is None
