"""`trainyard keys ...`: create, list and revoke API keys, straight in the database (like `db upgrade`)."""

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.core.db import Database
from app.core.errors import AppError
from app.core.settings import get_settings
from app.keys import service
from app.models import Role

cli = typer.Typer(help="API keys (run where the database is reachable).", no_args_is_help=True)
console = Console()


def _database() -> Database:
    return Database(get_settings().resolved_database_url)


def _fail(exc: AppError) -> typer.Exit:
    console.print(f"[red]{exc.detail}[/red]")
    return typer.Exit(2)


@cli.command()
def create(
    role: Annotated[Role, typer.Option(help="admin: everything; member: read and write; viewer: read")],
    project: Annotated[
        list[str] | None, typer.Option(help="a project the key may use (repeatable); created if missing")
    ] = None,
    all_projects: Annotated[
        bool, typer.Option("--all-projects", help="every project (member/viewer)")
    ] = False,
    name: Annotated[str | None, typer.Option(help="what the key is for")] = None,
) -> None:
    """Create a key and print it. It is shown this once: only its hash is stored."""
    db = _database()
    try:
        with db.session() as session:
            key, token, created = service.create_key(session, role, project or [], name, all_projects)
            scope = "all projects" if key.all_projects else ", ".join(service.project_names(session, key))
            key_id, prefix = key.id, key.prefix
    except AppError as exc:
        raise _fail(exc) from exc
    finally:
        db.dispose()
    for project_name in created:
        console.print(f"created project {project_name!r}", style="dim", highlight=False)
    console.print(f"key {key_id} ({prefix}), {role.value}, {scope}", highlight=False)
    # The key alone on its own line (plain stdout), so scripts can capture it.
    typer.echo(token)


@cli.command("list")
def list_keys(
    revoked: Annotated[bool, typer.Option("--revoked", help="include revoked keys")] = False,
) -> None:
    """Keys with their role, projects and last use (never the keys themselves)."""
    db = _database()
    table = Table("id", "prefix", "name", "role", "projects", "created", "last used", "revoked")
    try:
        with db.session() as session:
            for key in service.list_keys(session, include_revoked=revoked):
                projects = "*" if key.all_projects else ", ".join(service.project_names(session, key))
                table.add_row(
                    str(key.id),
                    key.prefix,
                    key.name,
                    key.role,
                    projects,
                    f"{key.created_at:%Y-%m-%d %H:%M}",
                    f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "-",
                    f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
                )
    finally:
        db.dispose()
    console.print(table)


@cli.command()
def revoke(key: Annotated[str, typer.Argument(help="the key's id, prefix, or the key itself")]) -> None:
    """Revoke a key: every request with it (and its stream tokens) is refused from now on."""
    db = _database()
    try:
        with db.session() as session:
            revoked = service.revoke_key(session, key)
            key_id, prefix = revoked.id, revoked.prefix
    except AppError as exc:
        raise _fail(exc) from exc
    finally:
        db.dispose()
    console.print(f"revoked key {key_id} ({prefix})", highlight=False)
