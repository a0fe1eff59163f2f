"""`trainyard datasets ...` and `trainyard versions ...`: DICE datasets (upload, list, show) and the frozen
versions jobs train from (create, list, show, diff). The DICE format: docs/datasets.md."""

from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from app.cli.common import ApiKey, ApiUrl, Json, client, console, print_json, table, task_name

datasets_cli = typer.Typer(help="DICE datasets (format: docs/datasets.md).", no_args_is_help=True)
versions_cli = typer.Typer(help="Frozen dataset versions, what jobs train from.", no_args_is_help=True)
ProjectName = Annotated[str, typer.Option(help="project name")]


class _Reading:
    """A file whose reads advance a progress bar (httpx reads an upload in chunks)."""

    def __init__(self, file: IO[bytes], progress: Progress, task: Any) -> None:
        self.file, self.progress, self.task = file, progress, task

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.progress.update(self.task, advance=len(chunk))
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


@datasets_cli.command()
def upload(
    zip_file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="a ZIP of a DICE dataset folder")
    ],
    project: ProjectName,
    name: Annotated[str, typer.Option(help="dataset name, unique in the project")],
    description: Annotated[str | None, typer.Option(help="what the dataset is")] = None,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Upload a DICE dataset ZIP (with a progress bar); it is validated as a whole before it is kept."""
    api_client = client(api, api_key)
    form = {"project_id": str(api_client.project_id(project)), "name": name}
    if description:
        form["description"] = description
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with zip_file.open("rb") as raw, Progress(*columns, console=console, disable=as_json) as progress:
        task = progress.add_task(f"uploading {zip_file.name}", total=zip_file.stat().st_size)
        files = {"file": (zip_file.name, _Reading(raw, progress, task), "application/zip")}
        dataset = api_client.request("POST", "/api/v1/datasets", data=form, files=files, timeout=None)
    if as_json:
        print_json(dataset)
    else:
        _print_dataset(dataset)


@datasets_cli.command("list")
def list_datasets(
    project: Annotated[str | None, typer.Option(help="project name")] = None,
    task: Annotated[str | None, typer.Option(help="only datasets with this task")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List datasets."""
    api_client = client(api, api_key)
    project_id = api_client.project_id(project) if project else None
    page = api_client.get("/api/v1/datasets", project_id=project_id, task_type=task_name(task), limit=limit)
    if as_json:
        print_json(page)
        return
    rows = [
        [
            d["id"],
            d["project"],
            d["name"],
            ", ".join(d["task_types"]),
            d["total_images"],
            d["total_annotations"],
        ]
        for d in page["datasets"]
    ]
    table(["id", "project", "name", "tasks", "images", "annotations"], rows)
    console.print(f"{len(page['datasets'])} of {page['total']}")


@datasets_cli.command()
def show(dataset_id: int, as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Show a dataset: splits, tasks, classes, and per-task annotation statistics."""
    api_client = client(api, api_key)
    dataset = api_client.get(f"/api/v1/datasets/{dataset_id}")
    stats = api_client.get(f"/api/v1/datasets/{dataset_id}/annotations/stats")
    if as_json:
        print_json({"dataset": dataset, "stats": stats})
        return
    _print_dataset(dataset)
    for task, numbers in stats["tasks"].items():
        shown = ", ".join(f"{k} {v}" for k, v in numbers.items() if isinstance(v, int | float | str))
        console.print(f"  {task} stats: {shown}", markup=False)


def _print_dataset(dataset: dict[str, Any]) -> None:
    splits = ", ".join(f"{k} {v}" for k, v in dataset["splits"].items())
    head = f"dataset {dataset['id']} {dataset['name']} ({dataset['project']})"
    counts = f"{dataset['total_images']} images ({splits}), {dataset['total_annotations']} annotations"
    console.print(f"{head}: {counts}", markup=False)
    for task, info in dataset["annotations"].items():
        console.print(f"  {task}: {len(info['classes'])} classes: {', '.join(info['classes'])}", markup=False)


@versions_cli.command()
def create(
    project: ProjectName,
    dataset: Annotated[
        int | None, typer.Option(help="dataset id (needed when the project has several)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="a display name")] = None,
    split: Annotated[
        str | None, typer.Option(help="re-split by ratios train:val[:test], e.g. 0.8:0.2 (default: keep)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the re-split")] = 0,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Freeze a version of a project's dataset (what `jobs submit --version` trains from)."""
    body: dict[str, Any] = {"dataset_id": dataset, "display_name": name, "split_seed": seed}
    if split:
        try:
            ratios = [float(part) for part in split.split(":")]
        except ValueError as exc:
            raise typer.BadParameter("ratios like 0.8:0.2 or 0.7:0.2:0.1", param_hint="--split") from exc
        body["splits"] = dict(zip(("train", "val", "test"), ratios, strict=False))
    api_client = client(api, api_key)
    path = f"/api/v1/projects/{api_client.project_id(project)}/versions"
    version = api_client.post(path, {k: v for k, v in body.items() if v is not None})
    if as_json:
        print_json(version)
    else:
        head = f"version {version['id']} ({version['name']}) {version['status']}"
        head += f": {version['image_count']} images"
        console.print(
            f"{head}; train on it: trainyard jobs submit --version {version['id']} ...", markup=False
        )


@versions_cli.command("list")
def list_versions(
    project: ProjectName,
    archived: Annotated[bool, typer.Option("--archived", help="include archived versions")] = False,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List a project's versions, newest first."""
    api_client = client(api, api_key)
    path = f"/api/v1/projects/{api_client.project_id(project)}/versions"
    page = api_client.get(path, include_archived=archived, limit=500)
    if as_json:
        print_json(page)
        return
    rows = [
        [
            v["id"],
            v["name"],
            v["dataset"],
            v["status"],
            v["image_count"],
            v["annotation_count"],
            v["created_at"][:19],
        ]
        for v in page["versions"]
    ]
    table(["id", "name", "dataset", "status", "images", "annotations", "created"], rows)


@versions_cli.command("show")
def show_version(
    version_id: int, project: ProjectName, as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None
) -> None:
    """Show a version: counts per split and class, leakage warnings, the jobs and models trained from it."""
    api_client = client(api, api_key)
    version = api_client.get(f"/api/v1/projects/{api_client.project_id(project)}/versions/{version_id}")
    if as_json:
        print_json(version)
        return
    console.print(
        f"version {version['id']} {version['name']} of {version['dataset']}: {version['status']}",
        markup=False,
    )
    for split, counts in version["split_counts"].items():
        console.print(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), markup=False)
    for warning in version["leakage"]:
        console.print(f"  [yellow]leakage:[/yellow] {warning}")
    for job in version["jobs"]:
        console.print(f"  job {job['id']} {job.get('name', '')} {job.get('status', '')}", markup=False)


@versions_cli.command()
def diff(
    version_id: int,
    other: int,
    project: ProjectName,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """What changed from VERSION_ID to OTHER: images and classes added, removed, changed."""
    api_client = client(api, api_key)
    path = f"/api/v1/projects/{api_client.project_id(project)}/versions/{version_id}/compare"
    comparison = api_client.get(path, other=other)
    if as_json:
        print_json(comparison)
        return
    console.print(", ".join(f"{k} {v}" for k, v in comparison["counts"].items()), markup=False)
    for label, key in (("+", "images_added"), ("-", "images_removed"), ("~", "images_changed")):
        for image in comparison[key][:20]:
            console.print(f"  {label} {image}", markup=False)
        if len(comparison[key]) > 20:
            console.print(f"  ... {len(comparison[key]) - 20} more {key.replace('_', ' ')}")
    for label, key in (("+", "classes_added"), ("-", "classes_removed")):
        if comparison[key]:
            console.print(f"  classes {label} {', '.join(comparison[key])}", markup=False)
