"""Names users choose, and the slugs that storage paths are built from."""

import re

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$"
# NAME_PATTERN in words, for error messages (a user should not have to read a regex).
NAME_RULE = "1 to 100 characters: letters, digits, spaces, '.', '_' or '-', starting with a letter or digit"
_NAME_RE = re.compile(NAME_PATTERN)


def is_valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name)) and ".." not in name


def slugify(name: str) -> str:
    """`My Run 1` -> `my-run-1`; only [a-z0-9._-], so a slug is always one safe path component."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return slug or "unnamed"
