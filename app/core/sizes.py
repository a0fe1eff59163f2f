"""Sizes as people read them, in the dashboard and the CLI alike."""

UNITS = ("KB", "MB", "GB", "TB", "PB")


def human_bytes(size: int | None) -> str:
    """1536 -> "1.5 KB" (powers of 1024, as the pages' other sizes); None (not measured) -> "—"."""
    if size is None:
        return "—"
    if abs(size) < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in UNITS[:-1]:
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {UNITS[-1]}"
