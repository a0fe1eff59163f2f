"""`trainyard models ...` and `trainyard predict`: the model registry, deployments and inference through
the REST API."""

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import (
    ApiKey,
    ApiUrl,
    ExitCode,
    Json,
    client,
    console,
    number,
    print_json,
    say,
    table,
    task_name,
)
from app.cli.watch import TASK_METRICS

cli = typer.Typer(help="Registered models and deployments.", no_args_is_help=True)
TaskOption = Annotated[str | None, typer.Option(help="detection, segmentation, classification or pose")]


def headline(model: dict[str, Any]) -> str:
    """The model's own metrics for its task: mAP50-95 for a detector, top-1/top-5 for a classifier."""
    labels = TASK_METRICS.get(model["task_type"], TASK_METRICS["detection"])
    metrics = model.get("metrics") or {}
    return " ".join(
        f"{label} {number(metrics.get(key), 3)}" for key, label in labels.items() if key in metrics
    )


@cli.command("list")
def list_models(
    project: Annotated[str | None, typer.Option(help="project name")] = None,
    task: TaskOption = None,
    status: Annotated[str | None, typer.Option(help="validating, ready or failed")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List registered models (one per finished job), best first."""
    params = {"project": project, "task": task_name(task), "status": status, "limit": limit}
    page = client(api, api_key).get("/api/v1/models", **params)
    if as_json:
        print_json(page)
        return
    rows = [
        [
            m["id"],
            m["project"],
            m["name"],
            m["task_type"],
            m["status"],
            headline(m),
            m["lineage"].get("job_id"),
        ]
        for m in page["items"]
    ]
    table(["id", "project", "name", "task", "status", "metrics", "job"], rows)
    console.print(f"{len(page['items'])} of {page['total']}")


@cli.command()
def catalog(as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """The architectures a job can train (`jobs submit --arch NAME`) and their tasks."""
    entries = client(api, api_key).get("/api/v1/models/catalog")
    if as_json:
        print_json(entries)
        return
    table(
        ["name", "tasks", "description"],
        [[m["name"], ", ".join(m["tasks"]), m["description"]] for m in entries],
    )


@cli.command()
def show(model_id: int, as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Show a registered model: task, status, metrics, classes, weights and lineage."""
    model = client(api, api_key).get_model(model_id)
    if as_json:
        print_json(model)
        return
    for key in ("id", "name", "project", "task_type", "architecture", "status", "imgsz", "best_epoch"):
        console.print(f"{key:>12}: {model.get(key)}", markup=False)
    console.print(f"{'metrics':>12}: {headline(model)}", markup=False)
    console.print(f"{'classes':>12}: {', '.join(model['class_names'])}", markup=False)
    console.print(f"{'weights':>12}: {model['weights_key']}", markup=False)
    if model.get("exported_key"):
        console.print(f"{'exported':>12}: {model['exported_key']}", markup=False)
    console.print(f"{'job':>12}: {model['lineage'].get('job_id')}", markup=False)


@cli.command("export-best")
def export_best(model_id: int, as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Copy the model's best weights to its export location in storage."""
    model = client(api, api_key).post(f"/api/v1/models/{model_id}/export-best")
    if as_json:
        print_json(model)
    else:
        console.print(f"model {model['id']} exported to {model['exported_key']}", markup=False)


@cli.command()
def export(
    model_id: int,
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript")] = "onnx",
    output: Annotated[Path | None, typer.Option(help="also download the exported file here")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for the worker's export and check")] = 600,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Export a model to ONNX or TorchScript on a worker, checked against the .pt model's boxes."""
    api_client = client(api, api_key)
    row = api_client.post(f"/api/v1/models/{model_id}/exports", {"format": fmt})
    path = f"/api/v1/models/{model_id}/exports/{row['id']}"
    deadline = time.monotonic() + wait
    while row["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(1.0)
        row = api_client.get(path)
    if row["status"] == "ready" and output is not None:
        api_client.download(f"{path}/file", output)
    if as_json:
        print_json(row)
    elif row["status"] == "ready":
        where = f", saved to {output}" if output is not None else f" (download: GET {path}/file)"
        size = row["size_bytes"] or 0
        console.print(f"export {row['id']}: {fmt}, {size / 1e6:.1f} MB, checked{where}", markup=False)
    elif row["status"] == "pending":
        console.print(f"export {row['id']} is still running on a worker: GET {path}", markup=False)
    if row["status"] == "failed":
        raise typer.Exit(say(f"export {row['id']} failed: {row['status_reason']}", ExitCode.FAILED))
    if row["status"] == "pending":
        raise typer.Exit(ExitCode.UNREACHABLE)


@cli.command()
def deploy(model_id: int, as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Make a ready model its project's active model for its task."""
    api_client = client(api, api_key)
    deployment = api_client.deploy(api_client.get_model(model_id)["project_id"], model_id)
    _print_deployment(deployment, as_json)


@cli.command()
def rollback(
    project: Annotated[str, typer.Option(help="project name")],
    task: TaskOption = None,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Restore the project's active model as it was before the newest deployment change."""
    api_client = client(api, api_key)
    path = f"/api/v1/projects/{api_client.project_id(project)}/deployments/rollback"
    _print_deployment(api_client.post(path, task=task_name(task)), as_json)


def _print_deployment(deployment: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(deployment)
        return
    active = deployment.get("active_model") or {}
    name = f"model {active['id']} ({active['name']})" if active else "none"
    console.print(
        f"project {deployment['project_id']}, {deployment['task_type']}: active {name}", markup=False
    )


def predict(
    images: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="image files")],
    model_id: Annotated[int | None, typer.Option("--model", help="a registered model's id")] = None,
    project: Annotated[str | None, typer.Option(help="use this project's active model (a name)")] = None,
    task: Annotated[str | None, typer.Option(help="with --project: which active model")] = None,
    conf: Annotated[float, typer.Option(min=0.0, max=1.0, help="minimum confidence")] = 0.25,
    imgsz: Annotated[int | None, typer.Option(help="image size (default: the model's training size)")] = None,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Run a model on images through a worker: one line per detection (or top class), or --json."""
    if (model_id is None) == (project is None):
        raise typer.BadParameter("give exactly one of --model ID or --project NAME")
    api_client = client(api, api_key)
    files = [(path.name, path.read_bytes()) for path in images]
    project_id = api_client.project_id(project) if project is not None else None
    form: dict[str, Any] = {"model_id": model_id, "project_id": project_id, "task": task_name(task)}
    answer = api_client.infer(files, conf=conf, imgsz=imgsz, **form)
    if as_json:
        print_json(answer)
        return
    for result in answer["results"]:
        found = result.get("detections") or result.get("top_k") or []
        console.print(f"[bold]{result['name']}[/bold] {result['width']}x{result['height']}: {len(found)}")
        for item in found:
            box = " ".join(f"{v:.1f}" for v in item.get("box", []))
            console.print(f"  {item['class_name']} {item['confidence']:.3f} {box}".rstrip(), markup=False)
    timing = answer["timing_ms"]
    console.print(f"model {answer['model_id']} on {answer['worker']}: {timing.get('api', 0):.1f} ms")
