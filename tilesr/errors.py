"""The one exception type users see: a problem with their input, named in one line."""

from __future__ import annotations


class TilesrError(Exception):
    """Bad input or an impossible request; the CLI prints the message and exits non-zero."""
