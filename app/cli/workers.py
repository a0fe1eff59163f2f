"""`trainyard workers ...`: the fleet as the API sees it, and draining a worker."""

from typing import Annotated

import typer

from app.cli.common import ApiKey, ApiUrl, Json, client, console, print_json, table
from app.core.sizes import human_bytes

cli = typer.Typer(help="Workers (one per GPU, or CPU).", no_args_is_help=True)


@cli.command("list")
def list_workers(as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Every registered worker: host, device, pool, queues, status, current job, caches and free disk."""
    page = client(api, api_key).get("/api/v1/workers")
    if as_json:
        print_json(page)
        return
    rows = [
        [w["id"], w.get("host"), _device(w.get("device")), w.get("pool"), ",".join(w.get("queues", [])),
         w.get("status"), w.get("current_job") or "", human_bytes(w.get("cache_bytes")),
         human_bytes(w.get("disk_free_bytes"))]
        for w in page["items"]
    ]  # fmt: skip
    table(["id", "host", "device", "pool", "queues", "status", "job", "caches", "disk free"], rows)


def _device(device: object) -> str:
    if isinstance(device, dict):
        return str(device.get("name") or device.get("type") or "")
    return "" if device is None else str(device)


@cli.command()
def drain(
    worker_id: Annotated[str, typer.Argument(help="the worker's id (`trainyard workers list`)")],
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Let the worker finish its current job and take no more."""
    worker = client(api, api_key).post(f"/api/v1/workers/{worker_id}/drain")
    if as_json:
        print_json(worker)
    else:
        console.print(f"worker {worker['id']} {worker['status']}", markup=False)
