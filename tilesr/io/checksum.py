"""The sha256 of a file, as the data registry and the model's provenance record it."""

from __future__ import annotations

from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (pooch reads it in blocks, never whole)."""
    import pooch

    return str(pooch.file_hash(str(path), alg="sha256"))
