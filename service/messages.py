"""How an exception's message is shown in one line (standard library only, so the training side
and the CLI use the same rule)."""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``exc``'s message (its type's name if it has none), at most
    ``limit`` characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]
