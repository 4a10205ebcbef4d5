"""tilesr: restore whole microscopy slides and z-stacks with a conditional diffusion model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

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
