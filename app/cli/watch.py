"""`jobs watch`: one live line per job (status, epoch, phase or a bar within the epoch, ETA, the task's
own metrics, losses) and one summary when the job ends.

The line is built for the terminal's width: losses go first, then the metrics, the ETA and the bar;
status and epoch always stay. Without a terminal (a CI log, a pipe) it prints a line per status change
and per epoch instead of redrawing.

Progress events come in two shapes: `{epoch, epochs, batch, batches, eta_s, phase}` (batch progress)
and the older `{epoch, total, eta_seconds}` (one per epoch); both are read.
"""

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from app.cli.client import ApiClient

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


def follow(client: ApiClient, job_id: int, console: Console) -> tuple[WatchState, dict[str, Any]]:
    """Follow the job until its final status; returns the state and the job as the API has it then."""
    job = client.get_job(job_id)
    position = job.get("queue_position")
    state = WatchState(job_id, job["task_type"], ahead=position if isinstance(position, int) else None)
    if console.is_terminal:
        with Live(Text(render(state, console.width)), console=console, auto_refresh=False) as live:
            for event in client.events(job_id):
                state.apply(event)
                live.update(Text(render(state, console.width)), refresh=True)
                if state.error and event["type"] == "error":
                    live.console.print(f"[red]{state.error}[/red]")
    else:
        for event in client.events(job_id):
            if state.apply(event):
                console.print(render(state, console.width), soft_wrap=True)
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
