"""The `trainyard` command: run the stack (server side) and drive jobs (client side)."""

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from app.cli import datasets, jobs, keys, models, projects, weights, workers
from app.cli.client import ApiError, Unreachable
from app.cli.common import ApiKey, ApiUrl, ExitCode, client, errors, report
from app.core.logging import configure_logging

cli = typer.Typer(
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)
db_cli = typer.Typer(help="Database migrations.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(jobs.cli, name="jobs")
cli.add_typer(keys.cli, name="keys")
cli.add_typer(projects.cli, name="projects")
cli.add_typer(models.cli, name="models")
cli.add_typer(datasets.datasets_cli, name="datasets")
cli.add_typer(datasets.versions_cli, name="versions")
cli.add_typer(workers.cli, name="workers")
cli.add_typer(weights.cli, name="weights")
cli.command()(models.predict)


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"trainyard {version('trainyard')}")
        except PackageNotFoundError:
            typer.echo("trainyard (not installed as a package)")
        raise typer.Exit()


HELP = (
    "Trainyard: train and serve vision models on a fleet of GPU workers.\n\n"
    "Client commands talk to the API at TRAINYARD_API_URL (default http://127.0.0.1:8000) "
    "with the key in TRAINYARD_API_KEY.\n\n"
    "Exit codes: 0 ok/completed, 1 failed, 2 bad usage or refused, 3 stopped, 4 cancelled, "
    "5 API unreachable or server error, 6 not found or not allowed."
)


@cli.callback(help=HELP)
def root(
    _version_flag: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """The command's own options (--version, -h)."""


@cli.command()
def demo(
    epochs: Annotated[int, typer.Option(help="training epochs (a few minutes on a CPU)")] = 30,
    api: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Train a first model on a synthetic dataset, register it and predict with it (needs a running
    `trainyard serve`)."""
    from app.cli import demo as first_model

    api_client = client(api, api_key)
    job = first_model.submit(api_client, epochs)
    code, model = jobs.follow_to_end(api_client, job["id"])
    if code != ExitCode.OK or model is None:
        raise typer.Exit(code or ExitCode.FAILED)
    raise typer.Exit(first_model.predict(api_client, model["id"]))


@cli.command()
def serve(
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    host: Annotated[str, typer.Option(help="API bind address")] = "127.0.0.1",
) -> None:
    """Run everything on this machine: API, a worker per GPU (or one CPU worker), scheduler."""
    # This process becomes the supervisor's: a module that imports no database code (app/cli/serve.py).
    os.execv(sys.executable, [sys.executable, "-m", "app.cli.serve", "--host", host, "--port", str(port)])


@cli.command()
def api(
    port: Annotated[int, typer.Option(help="port")] = 8000,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
) -> None:
    """Run the HTTP API (uvicorn)."""
    import uvicorn

    # log_config=None: uvicorn's own records go through the app's logging setup (JSON in production).
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, log_level="info", log_config=None)


@cli.command()
def worker(
    gpu: Annotated[int | None, typer.Option(help="GPU index to pin (CUDA_VISIBLE_DEVICES)")] = None,
    device: Annotated[str | None, typer.Option(help="'cpu' on machines without a GPU")] = None,
    queues: Annotated[str, typer.Option(help="comma-separated queues")] = "training,inference",
    name: Annotated[str | None, typer.Option(help="worker name (default: host and device)")] = None,
    pool: Annotated[
        str | None, typer.Option(help="worker pool jobs may require (default: the GPU model, e.g. a100)")
    ] = None,
) -> None:
    """Run one GPU-pinned worker process (one task at a time)."""
    if (gpu is None) == (device is None) or (device is not None and device != "cpu"):
        raise typer.BadParameter("give exactly one of --gpu N or --device cpu")
    from app.scheduling.pools import POOL_NAME
    from workers.cli import run_worker

    if pool is not None and not POOL_NAME.fullmatch(pool):
        raise typer.BadParameter("letters, digits, '-' and '_', at most 60", param_hint="--pool")
    run_worker(gpu, [q.strip() for q in queues.split(",") if q.strip()], name, pool)


@cli.command()
def scheduler() -> None:
    """Run the scheduler: periodic reconciliation of stuck and orphaned jobs (Celery beat)."""
    from workers.cli import run_scheduler

    run_scheduler()


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations (SQLite file by default, or DATABASE_URL)."""
    from app.cli.prepare import migrate_quietly
    from app.core.settings import get_settings

    configure_logging("cli")
    migrate_quietly(get_settings().resolved_database_url, revision)


@db_cli.command("prepare", hidden=True)
def db_prepare() -> None:
    """Migrate, and make the first admin key on a database without keys (run by `trainyard serve`)."""
    from app.cli.prepare import first_admin_key, migrate_quietly
    from app.cli.serve import FIRST_KEY
    from app.core.settings import get_settings

    configure_logging("serve")
    database_url = get_settings().resolved_database_url
    migrate_quietly(database_url)
    key = first_admin_key(database_url)
    if key is not None:
        print(f"{FIRST_KEY}{key}", flush=True)


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()]) -> None:
    """Revert migrations down to `revision` (`base` for an empty database)."""
    from app.core import migrate
    from app.core.settings import get_settings

    migrate.downgrade(get_settings().resolved_database_url, revision)


def main() -> None:
    """The console script: client failures end in one or two lines and a documented exit code."""
    from sqlalchemy.exc import OperationalError

    try:
        cli()
    except (Unreachable, ApiError, LookupError) as exc:
        sys.exit(report(exc))
    except OperationalError as exc:
        from app.core.settings import get_settings

        url = get_settings().resolved_database_url
        errors.print(f"[red]error:[/red] the database at {url} is not usable ({exc.orig})", highlight=False)
        errors.print(
            "  run `trainyard db upgrade` (or `trainyard serve`) first, with the same TRAINYARD_DATA_DIR"
        )
        sys.exit(ExitCode.UNREACHABLE)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
