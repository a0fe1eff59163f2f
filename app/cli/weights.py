"""`trainyard weights ...`: base weights (imported .pt files any project may start from), through the
REST API, so it works from any machine that can reach the server."""

from pathlib import Path
from typing import Annotated

import httpx
import typer

from app.cli.common import ApiKey, ApiUrl, Json, client, console, print_json, table, task_name

cli = typer.Typer(
    help="Base weights: import a .pt once, start any project's training from it.", no_args_is_help=True
)
WEIGHTS = "/api/v1/weights"
UPLOAD_TIMEOUT = httpx.Timeout(30.0, write=None, read=600.0)  # a large .pt, checked on arrival


@cli.command("import")
def import_weights(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="an Ultralytics .pt file")],
    name: Annotated[str | None, typer.Option(help="default: the file name without .pt")] = None,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Upload a .pt (admin key): checked, stored by content; the same file twice is the same record."""
    with file.open("rb") as data:
        files = {"file": (file.name, data, "application/octet-stream")}
        form = {"name": name} if name is not None else {}
        record = client(api, api_key).request("POST", WEIGHTS, files=files, data=form, timeout=UPLOAD_TIMEOUT)
    print_json(record)


@cli.command("list")
def list_weights(
    task: Annotated[str | None, typer.Option(help="detection, segmentation, classification or pose")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List base weights, newest first."""
    page = client(api, api_key).get(WEIGHTS, task=task_name(task), limit=limit)
    if as_json:
        print_json(page)
        return
    columns = ["id", "name", "task", "architecture", "classes", "MB", "status", "sha256"]
    rows = [
        [
            w["id"],
            w["name"],
            w["task_type"],
            w["architecture"],
            len(w["class_names"]),
            f"{w['size_bytes'] / 2**20:.1f}",
            w["status"],
            w["sha256"][:12],
        ]
        for w in page["items"]
    ]
    table(columns, rows)
    console.print(f"{len(page['items'])} of {page['total']}")


@cli.command()
def show(weights_id: int, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """One base weights record, as JSON."""
    print_json(client(api, api_key).get(f"{WEIGHTS}/{weights_id}"))


@cli.command()
def delete(weights_id: int, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Delete base weights (admin key); refused while a job or model starts from them."""
    client(api, api_key).request("DELETE", f"{WEIGHTS}/{weights_id}")
    console.print(f"base weights {weights_id} deleted")
