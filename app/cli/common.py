"""What every client command shares: the API options, `--json`, exit codes and one-line errors.

Exit codes (README, "Exit codes"): 0 completed (or success), 1 failed, 2 bad usage or a request the
API refused, 3 stopped, 4 cancelled, 5 API unreachable or server error, 6 not found or not allowed.
"""

import json
import sys
from enum import IntEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.cli.client import ApiClient, ApiError, Unreachable
from app.core.settings import get_settings

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    STOPPED = 3
    CANCELLED = 4
    UNREACHABLE = 5
    NOT_FOUND = 6


JOB_EXIT = {
    "completed": ExitCode.OK,
    "failed": ExitCode.FAILED,
    "stopped": ExitCode.STOPPED,
    "cancelled": ExitCode.CANCELLED,
}

ApiUrl = Annotated[
    str | None,
    typer.Option("--api", help="API base URL (default: TRAINYARD_API_URL, else http://127.0.0.1:8000)"),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="TRAINYARD_API_KEY", help="API key", show_envvar=True),
]
Json = Annotated[bool, typer.Option("--json", help="print JSON (for scripts) instead of a table")]
TASKS = ("detection", "segmentation", "classification", "pose")
# Ultralytics' own words, accepted as aliases so `yolo` users need not translate.
TASK_ALIASES = {"detect": "detection", "segment": "segmentation", "classify": "classification"}


def client(api: str | None, api_key: str | None) -> ApiClient:
    return ApiClient(api or get_settings().api_url, api_key)


def task_name(value: str | None) -> str | None:
    """A task name, or one of Ultralytics' (detect, segment, classify, pose)."""
    if value is None:
        return None
    task = TASK_ALIASES.get(value, value)
    if task not in TASKS:
        raise typer.BadParameter(f"{value!r} is not a task: use one of {', '.join(TASKS)}")
    return task


def say(message: str, code: ExitCode, hint: str | None = None) -> ExitCode:
    """`error: message` (and a hint) on stderr; returns the exit code."""
    errors.print(f"[red]error:[/red] {escape(message)}")
    if hint:
        errors.print(f"  {hint}", markup=False)
    return code


def report(exc: Exception) -> int:
    """One or two lines for a failure of a client command (see main()); returns its exit code."""
    if isinstance(exc, Unreachable):
        return say(
            str(exc),
            ExitCode.UNREACHABLE,
            "is it running? start it with `trainyard serve`, or give its URL: --api or TRAINYARD_API_URL",
        )
    if isinstance(exc, ApiError):
        if exc.status in (401, 403):
            return say(
                f"{exc} (HTTP {exc.status})", ExitCode.NOT_FOUND, "check TRAINYARD_API_KEY (or --api-key)"
            )
        if exc.status == 404:
            return say(str(exc), ExitCode.NOT_FOUND)
        if exc.status >= 500:
            return say(
                f"the API failed (HTTP {exc.status}): {exc}", ExitCode.UNREACHABLE, "see the API's log"
            )
        return say(str(exc), ExitCode.USAGE)  # a problem's detail names each field and its reason
    if isinstance(exc, LookupError):
        return say(str(exc.args[0]), ExitCode.NOT_FOUND)
    raise exc


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def table(columns: list[str], rows: list[list[Any]]) -> None:
    grid = Table(*columns)
    for row in rows:
        grid.add_row(*("" if v is None else str(v) for v in row))
    console.print(grid)


def number(value: Any, digits: int = 4) -> str:
    return "" if not isinstance(value, int | float) else f"{value:.{digits}f}"
