"""`jobs watch`: one live line per job (status, epoch, phase or a bar within the epoch, ETA, the task's
own metrics, losses) and one summary when the job ends.

The line is built for the terminal's width: losses go first, then the metrics, the ETA and the bar;
status and epoch always stay. Without a terminal (a CI log, a pipe) it prints a line per status change
and per epoch instead of redrawing.

While the job is queued the line says its place in line, why it waits and about when it starts. Those
change without an event of the job (other jobs start, workers come and go), so they are read again from
the job record every few seconds while it waits (`QueueWatch`).

Progress events come in two shapes: `{epoch, epochs, batch, batches, eta_s, phase}` (batch progress)
and the older `{epoch, total, eta_seconds}` (one per epoch); both are read.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from app.cli.client import ApiClient, ApiError, Unreachable

# The metrics a person judges each task by, with short labels (val metrics of the `metrics` event).
TASK_METRICS = {
    "detection": {"mAP50": "mAP50", "mAP50-95": "mAP50-95"},
    "segmentation": {"mAP50-95": "box", "mAP50-95_mask": "mask"},
    "pose": {"mAP50-95": "box", "mAP50-95_pose": "pose"},
    "classification": {"accuracy_top1": "top1", "accuracy_top5": "top5"},
}
PHASE_WORDS = {
    "setup": "setting up (dataset, model)",
    "val": "validating",
    "final": "final validation",
}
# A queued job's `waiting.kind` in a few words, for a table cell (`jobs show` prints the whole reason).
WAIT_WORDS = {
    "starting": "starting",
    "quota": "quota reached",
    "priority": "higher priority first",
    "fair_share": "fair share",
    "pool_unserved": "no worker serves it",
    "backoff": "retry backoff",
}
REFRESH_SECONDS = 5.0  # how often a queued job's place and reason are read again


@dataclass
class WatchState:
    job_id: int
    task: str
    status: str = "queued"
    attempt: int = 1
    epoch: int = 0
    epochs: int | None = None
    batch: int | None = None
    batches: int | None = None
    eta_s: float | None = None
    phase: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    ahead: int | None = None  # jobs ahead in the queue, when the API says (`queue_position`)
    waiting: dict[str, Any] | None = None  # the job record's `waiting`: position, kind, reason, estimate

    def refresh(self, job: dict[str, Any]) -> bool:
        """Take a queued job's place and reason from its record; True when the kind of reason changed."""
        if job.get("status") != "queued":
            return False
        before = (self.waiting or {}).get("kind")
        position = job.get("queue_position")
        self.ahead = position if isinstance(position, int) else None
        self.waiting = job.get("waiting")
        return (self.waiting or {}).get("kind") != before

    def apply(self, event: dict[str, Any]) -> bool:
        """Fold an event in; True when it is worth a line of its own in a plain log."""
        data, kind = event["data"], event["type"]
        if kind == "status":
            self.status = data["status"]
            if data.get("resumed"):
                self.attempt += 1
            if self.status == "running":  # each attempt starts by setting up
                self.phase, self.batch, self.batches = "setup", None, None
            return True
        if kind == "progress":
            before = self.phase
            self.epoch = int(data.get("epoch") or 0)
            self.epochs = data.get("epochs") or data.get("total") or self.epochs
            self.batch, self.batches = data.get("batch"), data.get("batches")
            eta = data.get("eta_s", data.get("eta_seconds"))
            self.eta_s = float(eta) if isinstance(eta, int | float) else None
            self.phase = data.get("phase", "train")
            return self.phase != before and self.phase in ("setup", "final")
        if kind == "metrics":
            self.metrics = {k: v for k, v in (data.get("val") or {}).items() if isinstance(v, int | float)}
            train = data.get("train") or {}
            self.losses = {
                k: v for k, v in train.items() if k.endswith("loss") and isinstance(v, int | float)
            }
            return True  # an epoch ended
        if kind == "error":
            self.error = f"{data.get('code')}: {data.get('message')}"
            return True
        return False

    def task_metrics(self, metrics: dict[str, Any]) -> list[str]:
        labels = TASK_METRICS.get(self.task, TASK_METRICS["detection"])
        return [
            f"{label} {metrics[key]:.3f}" for key, label in labels.items() if metrics.get(key) is not None
        ]


def about(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} m"
    return f"{seconds / 3600:.1f} h"


def start_text(seconds: float | None) -> str:
    """When a queued job should start, from the API's estimate."""
    return "no estimate yet (no finished job to go by)" if seconds is None else f"in about {about(seconds)}"


def waiting_text(waiting: dict[str, Any] | None) -> str:
    """A queued job's reason in a few words and its estimated start, for a table: "quota reached, ~4 m"."""
    if not waiting:
        return ""
    words = WAIT_WORDS.get(str(waiting.get("kind")), str(waiting.get("reason", "")))
    estimate = waiting.get("estimated_start_seconds")
    return words if estimate is None else f"{words}, ~{about(estimate)}"


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02d}:{secs:02d}" if hours else f"ETA {minutes}:{secs:02d}"


def bar(done: int, total: int, width: int) -> str:
    filled = round(width * done / total) if total else 0
    return "━" * filled + "╺" + "─" * max(0, width - filled - 1) if filled < width else "━" * width


def render(state: WatchState, width: int) -> str:
    """The live line, at most `width` characters: optional parts are dropped, losses first."""
    head = f"job {state.job_id} {state.status}"
    if state.status == "queued" and state.ahead is not None:
        head += f" ({state.ahead} ahead)" if state.ahead else " (next)"
    if state.attempt > 1:
        head += f" (attempt {state.attempt})"
    epoch = f"epoch {state.epoch}/{state.epochs or '?'}"
    if state.status == "queued" and state.waiting:
        # Why it waits is the line's news: cut at the terminal's edge rather than left out.
        estimate = state.waiting.get("estimated_start_seconds")
        starts = "" if estimate is None else f" starts in ~{about(estimate)}"
        line = f"{head} {epoch}{starts}: {state.waiting.get('reason', '')}"
        return line if len(line) <= width else line[: max(width - 1, 0)] + "…"
    within = ""
    bar_part = ""
    if state.status in ("running", "stopping"):
        if state.phase in PHASE_WORDS:
            within = PHASE_WORDS[state.phase]
        elif state.batch is not None and state.batches:
            within = f"{state.batch}/{state.batches}"
            bar_part = "BAR"
    optional = [  # in the order they are dropped when the line is too long
        " ".join(f"{k} {v:.3f}" for k, v in state.losses.items()),
        " ".join(state.task_metrics(state.metrics)),
        bar_part,
        eta_text(state.eta_s) if state.status == "running" else "",
        within,
    ]
    while True:
        parts = [head, epoch, *reversed([p for p in optional if p])]
        fixed = sum(len(p) + 1 for p in parts if p != "BAR") - 1
        bar_width = min(30, width - fixed - 1)
        fits = bar_width >= 8 if "BAR" in parts else fixed <= width
        if fits or not any(optional):
            line = " ".join(
                bar(state.batch or 0, state.batches or 1, bar_width) if p == "BAR" else p for p in parts
            )
            return line[:width]
        optional[next(i for i, p in enumerate(optional) if p)] = ""


class QueueWatch:
    """While the job is queued, reads its record every `every` seconds (at once after `poke`) and calls
    `changed(kind_changed)`: a thread beside the event stream, which says nothing while a job waits."""

    def __init__(
        self, client: ApiClient, state: WatchState, changed: Callable[[bool], None], every: float
    ) -> None:
        self.client, self.state, self.changed, self.every = client, state, changed, every
        self.wake, self.done = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"queue-watch-{state.job_id}", daemon=True)

    def poke(self) -> None:
        self.wake.set()

    def _run(self) -> None:
        while not self.done.is_set():
            self.wake.wait(self.every)
            self.wake.clear()
            if self.done.is_set() or self.state.status != "queued":
                continue
            try:
                job = self.client.get_job(self.state.job_id)
            except (ApiError, Unreachable):
                continue  # the event stream reports an API that went away; this only misses a refresh
            if self.state.status == "queued" and job.get("status") == "queued":
                self.changed(self.state.refresh(job))

    def __enter__(self) -> "QueueWatch":
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.done.set()
        self.wake.set()
        self.thread.join(timeout=5)


def follow(
    client: ApiClient, job_id: int, console: Console, refresh_every: float = REFRESH_SECONDS
) -> tuple[WatchState, dict[str, Any]]:
    """Follow the job until its final status; returns the state and the job as the API has it then."""
    job = client.get_job(job_id)
    state = WatchState(job_id, job["task_type"])
    state.refresh(job)

    def requeued(event: dict[str, Any]) -> bool:
        return event["type"] == "status" and event["data"].get("status") == "queued"

    if console.is_terminal:
        with Live(Text(render(state, console.width)), console=console, auto_refresh=False) as live:

            def redraw(_kind_changed: bool) -> None:
                live.update(Text(render(state, console.width)), refresh=True)

            with QueueWatch(client, state, redraw, refresh_every) as queue:
                for event in client.events(job_id):
                    state.apply(event)
                    redraw(False)
                    if state.error and event["type"] == "error":
                        live.console.print(f"[red]{state.error}[/red]")
                    if requeued(event):
                        queue.poke()
    else:

        def print_change(kind_changed: bool) -> None:
            if kind_changed:
                console.print(render(state, console.width), soft_wrap=True)

        with QueueWatch(client, state, print_change, refresh_every) as queue:
            for event in client.events(job_id):
                if state.apply(event):
                    console.print(render(state, console.width), soft_wrap=True)
                if requeued(event):
                    queue.poke()
    return state, client.get_job(job_id)


def ran_on(attempt: dict[str, Any]) -> str:
    """Where an attempt of the job record ran: "box-a (worker box-a-gpu0), requeued"."""
    where = f"{attempt.get('host') or 'unknown host'} (worker {attempt.get('worker')})"
    return f"{where}, {attempt['outcome']}" if attempt.get("outcome") else f"{where}, running"


def summary(state: WatchState, job: dict[str, Any], model: dict[str, Any] | None) -> list[str]:
    """The lines printed once when the job ends: outcome, best metrics, model, next command."""
    status = job["status"]
    results = job.get("results") or {}
    lines = [f"job {job['id']} {status} after {job['current_epoch']}/{job['total_epochs']} epochs"]
    placed = job.get("attempts") or []
    if placed:
        lines.append("  ran on: " + "; ".join(f"{a['attempt']}. {ran_on(a)}" for a in placed))
    if job.get("error_message"):
        lines.append(f"  error: {job.get('error_code')}: {job['error_message']}")
    best = results.get("best_metrics") or {}
    if best:
        shown = state.task_metrics(best) or [f"{k} {v:.3f}" for k, v in list(best.items())[:3]]
        lines.append(f"  best: {', '.join(shown)} (epoch {results.get('best_epoch')})")
    weights = (job.get("checkpoints") or {}).get("best")
    if weights:
        lines.append(f"  weights: {weights}")
    if model is not None:
        lines.append(f"  model: {model['id']} ({model['name']}, {model['status']})")
        lines.append(f"  deploy:  trainyard models deploy {model['id']}")
        lines.append(f"  predict: trainyard predict --model {model['id']} IMAGE...")
    if status in ("stopped", "failed"):
        lines.append(f"  resume:  trainyard jobs resume {job['id']}")
    return lines
