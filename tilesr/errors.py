"""The one exception type users see: a problem with their input, named in one line."""

from __future__ import annotations

from collections.abc import Collection


class TilesrError(Exception):
    """Bad input or an impossible request; the CLI prints the message and exits non-zero."""


def check_choice(label: str, value: object, choices: Collection[object]) -> None:
    """Raise ``label must be one of A, B, got 'x'`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        listed = ", ".join(str(c) for c in choices)
        raise TilesrError(f"{label} must be one of {listed}, got {value!r}")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type's name if it has none), cut to
    ``limit`` characters: what a one-line error quotes of a library's own error."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
