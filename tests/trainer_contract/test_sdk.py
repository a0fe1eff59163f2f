"""TrainerSDK: transports picked from the environment, and the log buffering rules (flush at 50 entries,
every few seconds, at once on ERROR; a failed flush never stops training and loses nothing)."""

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from workers import sdk as sdk_module
from workers.sdk import (
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

    def send(self, report: dict[str, Any]) -> None:
        with self.lock:
            self.reports.append(json.loads(json.dumps(report)))

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

    def send(self, report: dict[str, Any]) -> None:
        if report["type"] == "log":
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
        made.append(TrainerSDK(transport, job_id=1, config={}, flush_every=flush_every))
        return made[-1]

    yield make
    for sdk in made:
        sdk._closed.set()
        sdk._wake.set()


def test_the_documented_defaults() -> None:
    assert (FLUSH_AT_ENTRIES, FLUSH_EVERY_SECONDS) == (50, 5.0)
    assert TrainerSDK(Recording(), 1, {}).flush_every == 5.0


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
    assert first == {"type": "progress", "epoch": 1, "total_epochs": 3, "eta_seconds": None}


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

    sdk = TrainerSDK(http_transport(handler), 1, {})
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
    assert seen[3][2] == {"status": "failed", "error_code": "OOM", "error_message": "out of memory"}
    assert seen[5][2] == {"status": "completed", "results": {"epochs_completed": 1}}
    assert seen[4][2]["logs"][0]["message"] == "x"


def test_http_transport_retries_server_errors_but_not_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk_module.time, "sleep", lambda _: None)
    answers = [503, 200, 409]
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(answers[0])
        return httpx.Response(answers.pop(0), json={"detail": "training job 1 is finished"})

    transport = http_transport(handler)
    transport.send({"type": "progress", "epoch": 1, "total_epochs": 2})
    assert calls == [503, 200]
    with pytest.raises(ReportRefused) as refused:
        transport.send({"type": "progress", "epoch": 2, "total_epochs": 2})
    assert refused.value.status == 409 and "finished" in str(refused.value)
    assert calls == [503, 200, 409]
