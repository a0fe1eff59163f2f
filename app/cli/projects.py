"""`trainyard projects ...`: projects with their share of the GPU fleet, and setting it (admin keys)."""

from typing import Annotated, Any

import typer

from app.cli.common import ApiKey, ApiUrl, Json, client, console, print_json, table

cli = typer.Typer(help="Projects and their share of the GPUs.", no_args_is_help=True)


@cli.command("list")
def list_projects(as_json: Json = False, api: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Every project the key covers: jobs, running jobs against its GPU quota, and its share weight."""
    page = client(api, api_key).get("/api/v1/projects", limit=500)
    if as_json:
        print_json(page)
        return
    rows = [
        [p["id"], p["name"], p["jobs"], p["running_jobs"], quota_text(p.get("gpu_quota")), p["share_weight"]]
        for p in page["items"]
    ]
    table(["id", "name", "jobs", "running", "gpu quota", "weight"], rows)


def quota_text(quota: int | None) -> str:
    return "none" if quota is None else str(quota)


def parse_quota(value: str) -> int | None:
    """`--gpu-quota`: a number of GPUs, or `none` for no limit."""
    if value.strip().lower() == "none":
        return None
    if not value.strip().isdigit():
        raise typer.BadParameter(f"a number of GPUs or 'none', got {value!r}", param_hint="--gpu-quota")
    return int(value)


@cli.command("set")
def set_share(
    name: Annotated[str, typer.Argument(help="the project's name")],
    gpu_quota: Annotated[
        str | None,
        typer.Option(
            help="GPUs its jobs may hold while other projects wait ('none': no limit); past it a job only "
            "borrows an idle GPU, and borrowed GPUs are the first reclaimed"
        ),
    ] = None,
    share_weight: Annotated[
        float | None, typer.Option(help="its weight in the fair share of the fleet (default 1)")
    ] = None,
    as_json: Json = False,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Set a project's GPU quota and share weight (admin keys)."""
    body: dict[str, Any] = {}
    if gpu_quota is not None:
        body["gpu_quota"] = parse_quota(gpu_quota)
    if share_weight is not None:
        body["share_weight"] = share_weight
    if not body:
        raise typer.BadParameter("give --gpu-quota, --share-weight or both")
    api_client = client(api, api_key)
    project = api_client.patch(f"/api/v1/projects/{api_client.project_id(name)}", body)
    if as_json:
        print_json(project)
    else:
        console.print(
            f"project {project['name']}: gpu quota {quota_text(project['gpu_quota'])}, "
            f"share weight {project['share_weight']}, {project['running_jobs']} running",
            markup=False,
        )
