"""Job priorities: named levels stored as integers (higher starts first)."""

from enum import IntEnum
from typing import Literal

from app.core.errors import invalid
from app.models.api_key import Role


class Priority(IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2
    URGENT = 3  # before fair share; may preempt a borrowed GPU where TRAINYARD_PREEMPT_FOR allows it


# The levels by name, as the API and the CLI take them (the names of Priority, lower-case).
PriorityName = Literal["low", "normal", "high", "urgent"]

# The highest level each key role may ask for: urgent work is an operator's call.
ROLE_CEILING = {Role.ADMIN: Priority.URGENT, Role.MEMBER: Priority.HIGH, Role.VIEWER: Priority.LOW}


def parse(name: str) -> Priority:
    try:
        return Priority[name.upper()]
    except KeyError:
        raise invalid("priority", f"one of {', '.join(p.name.lower() for p in Priority)}") from None


def allowed(priority: Priority, role: Role | None) -> Priority:
    """`priority`, or 422 when the key's role may not ask for it (None: the server itself)."""
    ceiling = Priority.URGENT if role is None else ROLE_CEILING[role]
    if priority > ceiling:
        raise invalid("priority", f"{role} keys may ask for {ceiling.name.lower()} at most")
    return priority


def name(level: int) -> str:
    return Priority(level).name.lower() if level in Priority._value2member_map_ else str(level)


def preempt_priority(setting: str) -> Priority | None:
    """TRAINYARD_PREEMPT_FOR: the lowest priority that may preempt a borrowed GPU; "" for none."""
    return Priority[setting.strip().upper()] if setting.strip() else None
