"""`trainyard models ...` and `trainyard predict`: the model registry, deployments and inference through
the REST API."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from app.cli.client import ApiError
from app.cli.jobs import ApiKey, ApiUrl, api_client, console, exit_with

cli = typer.Typer(help="Registered models and deployments.", no_args_is_help=True)


@cli.command("list")
def list_models(
    project: Annotated[str | None, typer.Option(help="project name")] = None,
    task: Annotated[str | None, typer.Option(help="detection, segmentation, pose or classification")] = None,
    status: Annotated[str | None, typer.Option(help="validating, ready or failed")] = None,
    limit: Annotated[int, typer.Option()] = 50,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List registered models (one per finished job), best first."""
    try:
        page = api_client(api, api_key).list_models(project=project, task=task, status=status, limit=limit)
    except ApiError as exc:
        raise exit_with(exc) from exc
    table = Table("id", "project", "name", "task", "status", "mAP50-95", "job")
    for model in page["items"]:
        score = (model.get("metrics") or {}).get("mAP50-95")
        table.add_row(
            str(model["id"]),
            str(model["project_id"]),
            model["name"],
            model["task_type"],
            model["status"],
            "" if score is None else f"{score:.4f}",
            str(model["lineage"].get("job_id") or ""),
        )
    console.print(table)
    console.print(f"{len(page['items'])} of {page['total']}")


@cli.command()
def deploy(
    model_id: int,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Make a ready model its project's active model for its task."""
    client = api_client(api, api_key)
    try:
        deployment = client.deploy(client.get_model(model_id)["project_id"], model_id)
    except ApiError as exc:
        raise exit_with(exc) from exc
    console.print_json(json.dumps(deployment))


def predict(
    images: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="image files")],
    model_id: Annotated[int | None, typer.Option("--model", help="a registered model's id")] = None,
    project_id: Annotated[
        int | None, typer.Option("--project-id", help="use this project's active model")
    ] = None,
    task: Annotated[str | None, typer.Option(help="with --project-id: which active model")] = None,
    conf: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.25,
    imgsz: Annotated[int | None, typer.Option(help="default: the model's training size")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole answer as JSON")] = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Run a model on images through a worker: one line per detection (or top class), or --json."""
    files = [(path.name, path.read_bytes()) for path in images]
    form: dict[str, Any] = {"model_id": model_id, "project_id": project_id, "task": task}
    try:
        answer = api_client(api, api_key).infer(files, conf=conf, imgsz=imgsz, **form)
    except ApiError as exc:
        raise exit_with(exc) from exc
    if as_json:
        print(json.dumps(answer))
        return
    for result in answer["results"]:
        found = result.get("detections") or result.get("top_k") or []
        console.print(f"[bold]{result['name']}[/bold] {result['width']}x{result['height']}: {len(found)}")
        for item in found:
            box = " ".join(f"{v:.1f}" for v in item.get("box", []))
            console.print(f"  {item['class_name']} {item['confidence']:.3f} {box}".rstrip())
    timing = answer["timing_ms"]
    console.print(f"model {answer['model_id']} on {answer['worker']}: {timing.get('api', 0):.1f} ms")
