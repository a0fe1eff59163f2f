"""`trainyard jobs ...`: submit, list, show and watch training jobs through the REST API."""

import json
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.cli.client import ApiClient, ApiError
from app.core.settings import get_settings

cli = typer.Typer(help="Training jobs.", no_args_is_help=True)
console = Console()
EXIT_CODES = {"completed": 0, "failed": 1, "cancelled": 1, "stopped": 3}

ApiUrl = Annotated[str | None, typer.Option("--api", help="API base URL (default TRAINYARD_API_URL)")]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="TRAINYARD_API_KEY", help="API key (default TRAINYARD_API_KEY)"),
]


def api_client(api: str | None, api_key: str | None) -> ApiClient:
    return ApiClient(api or get_settings().api_url, api_key)


def exit_with(exc: ApiError) -> typer.Exit:
    console.print(f"[red]{exc}[/red]")
    for error in (exc.body or {}).get("errors", []) if isinstance(exc.body, dict) else []:
        console.print(f"  [red]{error['field']}[/red]: {error['reason']}")
    return typer.Exit(2)


def _parse_set(pairs: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set takes key=value, got {pair!r}")
        config[key.strip()] = yaml.safe_load(value)
    return config


@cli.command()
def submit(
    name: Annotated[str, typer.Option(help="job name, unique in the project")],
    project: Annotated[str, typer.Option(help="project name")],
    dataset: Annotated[str, typer.Option(help="YOLO dataset folder (absolute or storage-relative)")],
    model: Annotated[str, typer.Option(help="model name")] = "yolo11n",
    task: Annotated[str, typer.Option(help="detection|segmentation|classification|pose")] = "detection",
    epochs: Annotated[int | None, typer.Option()] = None,
    imgsz: Annotated[int | None, typer.Option()] = None,
    batch: Annotated[int | None, typer.Option()] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="any config key=value")] = None,
    watch_: Annotated[bool, typer.Option("--watch", help="follow the job until it ends")] = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Submit a training job."""
    config = _parse_set(set_ or [])
    config.update(
        {k: v for k, v in {"epochs": epochs, "imgsz": imgsz, "batch": batch}.items() if v is not None}
    )
    body = {
        "name": name,
        "project": project,
        "framework": "ultralytics",
        "task_type": task,
        "model_name": model,
        "dataset_path": dataset,
        "config": config,
    }
    client = api_client(api, api_key)
    try:
        job = client.submit(body)
    except ApiError as exc:
        raise exit_with(exc) from exc
    console.print(f"job [bold]{job['id']}[/bold] {job['status']}")
    if watch_:
        raise typer.Exit(_watch(client, job["id"]))


@cli.command("list")
def list_jobs(
    project: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List jobs, newest first."""
    try:
        page = api_client(api, api_key).list_jobs(project=project, status=status, limit=limit)
    except ApiError as exc:
        raise exit_with(exc) from exc
    table = Table("id", "project", "name", "status", "epoch", "attempt", "created")
    for job in page["items"]:
        table.add_row(
            str(job["id"]),
            job["project"],
            job["name"],
            job["status"],
            f"{job['current_epoch']}/{job['total_epochs']}",
            str(job["attempt"]),
            job["created_at"],
        )
    console.print(table)
    console.print(f"{len(page['items'])} of {page['total']}")


@cli.command()
def show(job_id: int, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Show a job as JSON."""
    try:
        console.print_json(json.dumps(api_client(api, api_key).get_job(job_id)))
    except ApiError as exc:
        raise exit_with(exc) from exc


@cli.command()
def watch(job_id: int, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Follow a job live (epoch, ETA, losses, mAP); exit 0 if it completes, non-zero otherwise."""
    raise typer.Exit(_watch(api_client(api, api_key), job_id))


def _watch(client: ApiClient, job_id: int) -> int:
    status = "queued"
    latest = ""
    columns = (
        TextColumn("[bold]job {task.fields[job]}[/bold] {task.fields[status]}"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[latest]}"),
    )
    try:
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("train", total=None, job=job_id, status=status, latest="")
            for event in client.events(job_id):
                data = event["data"]
                if event["type"] == "status":
                    status = data["status"]
                elif event["type"] == "progress":
                    progress.update(bar, completed=data["epoch"], total=data["epochs"])
                elif event["type"] == "metrics":
                    train, val = data.get("train", {}), data.get("val", {})
                    parts = [f"{k}={v:.3f}" for k, v in train.items() if k.endswith("loss")]
                    parts += [f"{k}={v:.3f}" for k, v in val.items() if k.startswith("mAP")]
                    latest = " ".join(parts)
                elif event["type"] == "error":
                    console.print(f"[red]{data.get('code')}: {data.get('message')}[/red]")
                progress.update(bar, status=status, latest=latest)
    except ApiError as exc:
        raise exit_with(exc) from exc
    colour = "green" if status == "completed" else "red"
    console.print(f"job {job_id} [{colour}]{status}[/{colour}]")
    return EXIT_CODES.get(status, 1)
