"""tilesr: restore whole microscopy slides and z-stacks with a conditional diffusion model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: models shipped inside the package (see docs/model-card.md)
BUNDLED_MODELS = ("default", "regression")


def bundled_model(name: str = "default") -> Path:
    """Path of a model shipped with tilesr: ``default`` (the diffusion model that
    ``tilesr restore`` uses without ``--model``) or ``regression`` (its CARE-style
    baseline: one deterministic evaluation per tile)."""
    from tilesr.errors import TilesrError, check_choice

    check_choice("bundled model", name, BUNDLED_MODELS)
    path = Path(__file__).resolve().parent / "bundled" / f"{name}.onnx"
    if not path.is_file():
        raise TilesrError(f"the bundled model {name!r} is not installed ({path} is missing)")
    return path


if TYPE_CHECKING:
    from tilesr.engine.restore import restore as restore
    from tilesr.options import RestoreOptions as RestoreOptions


def __getattr__(name: str) -> Any:
    # The engine pulls in dask; keep `import tilesr` cheap for the CLI and the trainer.
    if name == "restore":
        from tilesr.engine.restore import restore

        return restore
    if name == "RestoreOptions":
        from tilesr.options import RestoreOptions

        return RestoreOptions
    raise AttributeError(f"module 'tilesr' has no attribute {name!r}")
