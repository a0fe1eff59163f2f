"""`trainyard jobs ...`: submit (or dry-run), list, show, watch, stop, cancel, resume and read the logs of
training jobs through the REST API."""

import functools
import inspect
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from app.cli import watch as live
from app.cli.client import ApiClient
from app.cli.common import (
    JOB_EXIT,
    ApiKey,
    ApiUrl,
    ExitCode,
    Json,
    client,
    console,
    print_json,
    table,
    task_name,
)
from app.scheduling.priorities import PriorityName

cli = typer.Typer(help="Training jobs.", no_args_is_help=True)

Project = Annotated[str, typer.Option(help="project name (created on first use)")]
TASK_HELP = "detection, segmentation, classification or pose (also detect, segment, classify)"


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs as config overrides; values are YAML (`epochs=5` is a number)."""
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"takes key=value, got {pair!r}", param_hint="--set")
        config[key.strip()] = yaml.safe_load(value)
    return config


def read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--config") from exc
    if not isinstance(loaded, dict):
        raise typer.BadParameter(f"{path} must be a mapping of config keys", param_hint="--config")
    return loaded


def job_body(
    name: str,
    project: str,
    dataset: str | None,
    version: int | None,
    from_job: int | None,
    from_model: int | None,
    arch: str,
    task: str,
    config: dict[str, Any],
    priority: str | None = None,
    pool: str | None = None,
) -> dict[str, Any]:
    if (dataset is None) == (version is None):
        raise typer.BadParameter("give exactly one of --dataset FOLDER or --version ID")
    body: dict[str, Any] = {
        "name": name,
        "project": project,
        "framework": "ultralytics",
        "task_type": task,
        "model_name": arch,
        "dataset_path": dataset,
        "dataset_version_id": version,
        "checkpoint_job_id": from_job,
        "checkpoint_model_id": from_model,
        "config": config,
        "priority": priority,
        "pool": pool,
    }
    return {k: v for k, v in body.items() if v is not None}


def submission(
    name: Annotated[str, typer.Option(help="job name, unique in the project")],
    project: Project,
    dataset: Annotated[
        str | None,
        typer.Option(help="YOLO dataset folder: relative to the storage root, or absolute in an import root"),
    ] = None,
    version: Annotated[
        int | None, typer.Option(help="a frozen dataset version id, instead of --dataset")
    ] = None,
    from_job: Annotated[int | None, typer.Option(help="start from this job's best weights")] = None,
    from_model: Annotated[int | None, typer.Option(help="start from this registered model's weights")] = None,
    arch: Annotated[
        str,
        typer.Option(
            help="architecture to train (`trainyard models catalog`); a registered model: --from-model"
        ),
    ] = "yolo11n",
    task: Annotated[str, typer.Option(help=TASK_HELP)] = "detection",
    config_file: Annotated[
        Path | None, typer.Option("--config", exists=True, dir_okay=False, help="YAML of config overrides")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="a config override key=value (repeatable; wins over --config)"),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="shortcut for --set epochs=N")] = None,
    imgsz: Annotated[int | None, typer.Option(help="shortcut for --set imgsz=N")] = None,
    batch: Annotated[int | None, typer.Option(help="shortcut for --set batch=N")] = None,
    priority: Annotated[
        PriorityName,
        typer.Option(
            case_sensitive=False,
            help="higher starts first; urgent (admin keys) goes before the fair share; members: high at most",
        ),
    ] = "normal",
    pool: Annotated[
        str | None, typer.Option(help="the worker pool the job needs, e.g. a100 (`trainyard workers list`)")
    ] = None,
) -> dict[str, Any]:
    config = read_config(config_file) | parse_set(set_ or [])
    shortcuts = {"epochs": epochs, "imgsz": imgsz, "batch": batch}
    config |= {k: v for k, v in shortcuts.items() if v is not None}
    resolved_task = task_name(task) or "detection"
    return job_body(
        name,
        project,
        dataset,
        version,
        from_job,
        from_model,
        arch,
        resolved_task,
        config,
        priority.lower(),
        pool,
    )


def with_submission(command: Any) -> Any:
    """Give `command` the submission options (shared by submit and preflight) as a `body` argument."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "body"]
    shared = list(inspect.signature(submission).parameters.values())

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        body = submission(**{p.name: kwargs.pop(p.name) for p in shared})
        return command(body=body, **kwargs)

    wrapper.__signature__ = inspect.Signature(shared + own)  # type: ignore[attr-defined]
    return wrapper


@cli.command()
@with_submission
def submit(
    body: dict[str, Any],
    watch_: Annotated[bool, typer.Option("--watch", help="follow the job until it ends")] = False,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Submit a training job (from a dataset folder or a frozen version; optionally from earlier weights)."""
    api_client = client(api, api_key)
    job = api_client.submit(body)
    if as_json:
        print_json(job)
    else:
        console.print(
            f"job [bold]{job['id']}[/bold] {job['status']}: `trainyard jobs watch {job['id']}` follows it"
        )
    if watch_:
        raise typer.Exit(_watch(api_client, job["id"], quiet=as_json))


@cli.command()
@with_submission
def preflight(
    body: dict[str, Any], as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None
) -> None:
    """Check a submission without creating anything: every problem, the resolved config and its CLI
    equivalent. Exit 0 when it would be accepted, 2 when not."""
    result = client(api, api_key).post("/api/v1/training/preflight", body)
    if as_json:
        print_json(result)
    else:
        config = result.get("config") or {}
        if config.get("yaml"):
            console.print("[bold]resolved config[/bold]")
            console.print(config["yaml"].rstrip(), markup=False)
        if config.get("cli"):
            console.print(f"[bold]as a command[/bold]\n{config['cli']}", markup=False)
        dataset = result.get("dataset")
        if dataset:
            console.print(f"dataset: {dataset['path']} ({dataset['num_classes']} classes)", markup=False)
        for warning in result["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {warning}")
        for problem in result["problems"]:
            console.print(f"[red]problem:[/red] {problem['field']}: {problem['reason']}")
        console.print(
            "[green]ok: the job would be accepted[/green]" if result["ok"] else "[red]refused[/red]"
        )
    raise typer.Exit(ExitCode.OK if result["ok"] else ExitCode.USAGE)


@cli.command("list")
def list_jobs(
    project: Annotated[str | None, typer.Option(help="project name")] = None,
    status: Annotated[
        str | None, typer.Option(help="queued, running, completed, failed, stopped ...")
    ] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List jobs, newest first."""
    page = client(api, api_key).get("/api/v1/training/jobs", project=project, status=status, limit=limit)
    if as_json:
        print_json(page)
        return
    rows = [
        [
            j["id"],
            j["project"],
            j["name"],
            j["task_type"],
            j.get("priority"),
            status_of(j),
            live.waiting_text(j.get("waiting")),
            epoch_of(j),
            j["attempt"],
            j["created_at"][:19],
        ]
        for j in page["items"]
    ]
    columns = [
        "id",
        "project",
        "name",
        "task",
        "priority",
        "status",
        "waiting",
        "epoch",
        "attempt",
        "created",
    ]
    table(columns, rows)
    console.print(f"{len(page['items'])} of {page['total']}")


def status_of(job: dict[str, Any]) -> str:
    """The status, and for a queued job how many jobs the scheduler starts before it (as `jobs watch`)."""
    ahead = job.get("queue_position")
    if job["status"] != "queued" or ahead is None:
        return str(job["status"])
    return f"queued ({ahead} ahead)" if ahead else "queued (next)"


def epoch_of(job: dict[str, Any]) -> str:
    return f"{job['current_epoch']}/{job['total_epochs']}"


@cli.command()
def show(job_id: int, as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Show a job: status, progress, results, checkpoints."""
    job = client(api, api_key).get_job(job_id)
    if as_json:
        print_json(job)
        return
    for key in ("id", "name", "project", "task_type", "model_name", "status", "attempt", "priority"):
        console.print(f"{key:>14}: {job.get(key)}", markup=False)
    if job.get("pool"):
        console.print(f"{'pool':>14}: {job['pool']}", markup=False)
    waiting = job.get("waiting") if job["status"] == "queued" else None
    if waiting:
        console.print(f"{'waiting':>14}: #{waiting['position']} in line: {waiting['reason']}", markup=False)
        console.print(f"{'starts':>14}: {live.start_text(waiting.get('estimated_start_seconds'))}")
    for placed in job.get("attempts") or []:
        console.print(f"{'attempt ' + str(placed['attempt']):>14}: {live.ran_on(placed)}", markup=False)
    console.print(f"{'epoch':>14}: {job['current_epoch']}/{job['total_epochs']}")
    source = job.get("dataset_path") or f"version {job.get('dataset_version_id')}"
    console.print(f"{'dataset':>14}: {source}", markup=False)
    if job.get("error_message"):
        console.print(f"{'error':>14}: {job['error_code']}: {job['error_message']}", markup=False)
    best = (job.get("results") or {}).get("best_metrics") or {}
    if best:
        console.print(f"{'best':>14}: " + ", ".join(f"{k} {v:.4f}" for k, v in best.items()))
    for kind, path in (job.get("checkpoints") or {}).items():
        if path:
            console.print(f"{kind + '.pt':>14}: {path}", markup=False)


@cli.command()
def watch(
    job_id: int,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Follow a job live until it ends. Exit 0 completed, 1 failed, 3 stopped, 4 cancelled."""
    raise typer.Exit(_watch(client(api, api_key), job_id))


def _watch(api_client: ApiClient, job_id: int, quiet: bool = False) -> int:
    return follow_to_end(api_client, job_id, quiet)[0]


def follow_to_end(
    api_client: ApiClient, job_id: int, quiet: bool = False
) -> tuple[int, dict[str, Any] | None]:
    """Watch the job until it ends, print its summary once; (exit code, the model it registered).
    `quiet` (with --json, whose stdout is only JSON): no view and no summary, only the exit code."""
    state, job = live.follow(api_client, job_id, Console(quiet=True) if quiet else console)
    model = _model_of(api_client, job) if job["status"] in ("completed", "stopped") else None
    if not quiet:
        colour = "green" if job["status"] == "completed" else "red"
        first, *rest = live.summary(state, job, model)
        console.print(f"[{colour}]{first}[/{colour}]", highlight=False)
        for line in rest:
            console.print(line, markup=False, highlight=False)
    return JOB_EXIT.get(job["status"], ExitCode.FAILED), model


def _model_of(api_client: ApiClient, job: dict[str, Any]) -> dict[str, Any] | None:
    """The registered model a finished job produced, if any (registration follows completion)."""
    for _ in range(10):
        page = api_client.get("/api/v1/models", project=job["project"], limit=500)
        for model in page["items"]:
            if model["lineage"].get("job_id") == job["id"]:
                return dict(model)
        time.sleep(0.3)
    return None


def _transition(action: str, job_id: int, api: str | None, api_key: str | None, as_json: bool) -> None:
    job = client(api, api_key).post(f"/api/v1/training/jobs/{job_id}/{action}")
    if as_json:
        print_json(job)
    else:
        console.print(f"job {job['id']} {job['status']} (attempt {job['attempt']})")


@cli.command()
def stop(job_id: int, as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Stop a running job after its current step (resumable); a queued job is cancelled."""
    _transition("stop", job_id, api, api_key, as_json)


@cli.command()
def cancel(job_id: int, as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Cancel a queued job: it never starts."""
    _transition("cancel", job_id, api, api_key, as_json)


@cli.command()
def resume(
    job_id: int,
    watch_: Annotated[bool, typer.Option("--watch", help="follow the job until it ends")] = False,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Continue a stopped or failed job from its last checkpoint, as a new attempt."""
    _transition("resume", job_id, api, api_key, as_json)
    if watch_:
        raise typer.Exit(_watch(client(api, api_key), job_id, quiet=as_json))


@cli.command()
def logs(
    job_id: int,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new lines until the job ends")
    ] = False,
    level: Annotated[str | None, typer.Option(help="only this level: debug, info, warning, error")] = None,
    limit: Annotated[int, typer.Option(help="at most this many lines (without --follow)")] = 1000,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Print a job's log lines (oldest first); --follow keeps printing them live."""
    api_client = client(api, api_key)
    if not follow:
        page = api_client.get(f"/api/v1/training/jobs/{job_id}/logs", level=level, limit=limit)
        for entry in page["logs"]:
            _print_log(entry["timestamp"], entry["level"], entry["message"], entry, as_json)
        return
    api_client.get_job(job_id)  # not found: one line and exit 6, before streaming
    for event in api_client.events(job_id):
        data = event["data"]
        if event["type"] == "log" and (level is None or str(data.get("level", "")).lower() == level.lower()):
            _print_log(
                event["ts"],
                str(data.get("level", "info")).upper(),
                str(data.get("message", "")),
                data,
                as_json,
            )
        elif event["type"] == "status" and not as_json:
            console.print(f"[dim]-- {data['status']}[/dim]")


def _print_log(ts: str, level: str, message: str, raw: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(raw)
    else:
        console.print(f"[dim]{ts[:19]}[/dim] {level:<7} {message}", highlight=False, soft_wrap=True)
