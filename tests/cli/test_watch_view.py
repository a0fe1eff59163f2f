"""What `jobs watch` shows for a job's events, at any terminal width, and why a queued job waits."""

import io
import threading
from typing import Any

from rich.console import Console

from app.cli.watch import WatchState, follow, render, summary, waiting_text


def event(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": data, "seq": 1}


def running_detector() -> WatchState:
    state = WatchState(7, "detection")
    state.apply(event("status", status="running"))
    state.apply(event("progress", epoch=3, epochs=10, batch=40, batches=100, eta_s=125.0, phase="train"))
    state.apply(event("metrics", epoch=2, train={"box_loss": 1.5, "cls_loss": 0.9}, val={"mAP50-95": 0.31}))
    return state


def test_a_wide_terminal_shows_everything() -> None:
    line = render(running_detector(), 160)
    assert line.startswith("job 7 running epoch 3/10 40/100 ")
    assert "ETA 2:05" in line and "mAP50-95 0.310" in line and "box_loss 1.500" in line and "━" in line


def test_narrow_terminals_drop_losses_first_and_keep_status_and_epoch() -> None:
    state = running_detector()
    widths = {width: render(state, width) for width in (110, 90, 60, 40, 24)}
    assert all(len(line) <= width for width, line in widths.items())
    assert all(line.startswith("job 7 running epoch 3/10") for line in widths.values())
    assert "mAP50-95" in widths[90] and "box_loss" not in widths[90]
    assert "ETA" in widths[60] and "mAP50-95" not in widths[60]


def test_setup_and_final_validation_are_named_not_shown_as_a_stuck_bar() -> None:
    state = WatchState(7, "detection")
    state.apply(event("status", status="running"))
    assert "setting up" in render(state, 100)
    state.apply(event("progress", epoch=10, epochs=10, batch=None, batches=None, eta_s=None, phase="final"))
    assert "final validation" in render(state, 100) and "━" not in render(state, 100)


def test_the_older_progress_shape_is_read() -> None:
    state = WatchState(7, "detection")
    state.apply(event("status", status="running"))
    state.apply(event("progress", epoch=2, total=5, eta_seconds=30.0))
    assert render(state, 100) == "job 7 running epoch 2/5 ETA 0:30"


def test_a_classifier_shows_top1_and_top5() -> None:
    state = WatchState(3, "classification")
    state.apply(
        event("metrics", epoch=1, train={"loss": 0.7}, val={"accuracy_top1": 0.8, "accuracy_top5": 1.0})
    )
    assert "top1 0.800 top5 1.000" in render(state, 100)


def test_a_resumed_job_says_which_attempt() -> None:
    state = WatchState(7, "detection")
    for status in ("queued", "running", "stopping", "stopped"):
        state.apply(event("status", status=status))
    state.apply(event("status", status="queued", resumed=True))
    state.apply(event("status", status="running"))
    assert render(state, 100).startswith("job 7 running (attempt 2) epoch")


def test_the_summary_names_the_model_and_the_next_commands() -> None:
    job = {
        "id": 7, "status": "stopped", "current_epoch": 4, "total_epochs": 10, "error_message": None,
        "results": {"best_epoch": 3, "best_metrics": {"mAP50": 0.5, "mAP50-95": 0.3}},
        "checkpoints": {"best": "projects/p/model/training/r/weights/best.pt"},
    }  # fmt: skip
    job["attempts"] = [
        {"attempt": 1, "worker": "a-gpu0", "host": "box-a", "outcome": "requeued"},
        {"attempt": 2, "worker": "b-gpu0", "host": "box-b", "outcome": "stopped"},
    ]
    model = {"id": 12, "name": "r", "status": "ready"}
    lines = summary(WatchState(7, "detection"), job, model)
    assert lines[0] == "job 7 stopped after 4/10 epochs"
    assert lines[1] == "  ran on: 1. box-a (worker a-gpu0), requeued; 2. box-b (worker b-gpu0), stopped"
    assert "  best: mAP50 0.500, mAP50-95 0.300 (epoch 3)" in lines
    assert "  deploy:  trainyard models deploy 12" in lines and "  resume:  trainyard jobs resume 7" in lines


def queued(ahead: int, kind: str, reason: str, estimate: float | None = 240.0) -> dict[str, Any]:
    """A queued job's record as the API returns it."""
    waiting = {"position": ahead + 1, "kind": kind, "reason": reason, "estimated_start_seconds": estimate}
    return {
        "id": 7,
        "task_type": "detection",
        "status": "queued",
        "queue_position": ahead,
        "waiting": waiting,
    }


QUOTA = "quota reached: project vision runs 2 of its 2 GPUs; it borrows one when no other project waits"


def test_a_queued_job_says_why_it_waits_and_when_it_starts_cut_at_the_edge() -> None:
    state = WatchState(7, "detection")
    state.refresh(queued(2, "quota", QUOTA))
    line = render(state, 200)
    assert line == f"job 7 queued (2 ahead) epoch 0/? starts in ~4 m: {QUOTA}"
    narrow = render(state, 60)
    assert len(narrow) == 60 and narrow.startswith("job 7 queued (2 ahead) epoch 0/? starts in ~4 m: quota")
    assert narrow.endswith("…")
    state.apply(event("status", status="running"))
    assert "quota" not in render(state, 200)  # a running job's line is about training


def test_the_list_says_why_in_a_few_words() -> None:
    assert waiting_text(queued(0, "quota", QUOTA)["waiting"]) == "quota reached, ~4 m"
    assert waiting_text(
        queued(3, "pool_unserved", "no live worker consumes pool 'a100'", None)["waiting"]
    ) == ("no worker serves it")
    assert waiting_text(None) == ""


class RecordedApi:
    """The two calls `follow` makes, answering what a real API answered. `records` are the job's records
    in the order the API gives them (the last one again after that); the events after `held` wait until
    the job's record was read `reads` times (the queue watch's refreshes)."""

    def __init__(
        self, events: list[dict[str, Any]], records: list[dict[str, Any]], held: int = 0, reads: int = 0
    ) -> None:
        self.recorded, self.records, self.held, self.reads = events, records, held, reads
        self.read = 0
        self.enough_reads = threading.Event()

    def get_job(self, job_id: int) -> dict[str, Any]:
        record = self.records[min(self.read, len(self.records) - 1)]
        self.read += 1
        if self.read >= self.reads:
            self.enough_reads.set()
        return record

    def events(self, job_id: int) -> Any:
        for index, recorded in enumerate(self.recorded):
            if index == self.held:
                assert self.enough_reads.wait(30), "the queued job's record was never read again"
            yield recorded


def test_the_live_view_on_a_terminal_redraws_one_line_and_ends_with_the_outcome() -> None:
    events = [
        event("status", status="queued"),
        event("status", status="running"),
        event("progress", epoch=1, epochs=2, batch=5, batches=10, eta_s=3.0, phase="train"),
        event("metrics", epoch=1, train={"box_loss": 1.0}, val={"mAP50-95": 0.2}),
        event("progress", epoch=2, epochs=2, batch=None, batches=None, eta_s=None, phase="final"),
        event("status", status="completed"),
    ]
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=70)
    api = RecordedApi(events, [queued(2, "fair_share", "waiting for a GPU"), {**events[-1]["data"], "id": 7}])
    state, job = follow(api, 7, console)  # type: ignore[arg-type]
    assert state.status == "completed" and state.epoch == 2 and job["status"] == "completed"
    assert "final validation" in screen.getvalue() and "2 ahead" in screen.getvalue()


def test_while_queued_the_reason_is_read_again_and_redrawn() -> None:
    """No event says a queued job's reason changed: the view reads the job again while it waits."""
    events = [
        event("status", status="queued"),
        event("status", status="running"),
        event("status", status="cancelled"),
    ]
    records = [
        queued(3, "quota", QUOTA),  # when the watch starts
        queued(3, "quota", QUOTA),  # right after the replayed `queued` event
        queued(0, "starting", "starting: a GPU is free", 30.0),  # a refresh later
        {"id": 7, "task_type": "detection", "status": "cancelled"},
    ]
    screen = io.StringIO()
    api = RecordedApi(events, records, held=1, reads=3)
    follow(api, 7, Console(file=screen, force_terminal=True, width=200), refresh_every=0.05)  # type: ignore[arg-type]
    shown = screen.getvalue()
    assert "job 7 queued (3 ahead) epoch 0/? starts in ~4 m: quota reached" in shown
    assert "job 7 queued (next) epoch 0/? starts in ~30 s: starting: a GPU is free" in shown
    assert shown.index("quota reached") < shown.index("a GPU is free")


def test_without_a_terminal_a_new_kind_of_reason_is_a_new_line() -> None:
    events = [event("status", status="queued"), event("status", status="cancelled")]
    records = [
        queued(3, "quota", QUOTA),
        queued(2, "quota", QUOTA),  # the same reason, one place further: no line of its own
        queued(0, "starting", "starting: a GPU is free", 30.0),
        {"id": 7, "task_type": "detection", "status": "cancelled"},
    ]
    screen = io.StringIO()
    api = RecordedApi(events, records, held=1, reads=3)
    follow(api, 7, Console(file=screen, width=200), refresh_every=0.05)  # type: ignore[arg-type]
    lines = screen.getvalue().splitlines()
    assert lines == [
        f"job 7 queued (3 ahead) epoch 0/? starts in ~4 m: {QUOTA}",
        "job 7 queued (next) epoch 0/? starts in ~30 s: starting: a GPU is free",
        "job 7 cancelled epoch 0/?",
    ], lines
