"""Image input and output: lazy readers and OME-Zarr writers.

``open_image`` reads OME-Zarr (NGFF 0.4/0.5), plain zarr and TIFF/OME-TIFF lazily;
``write_ome_zarr`` writes a multiscale OME-Zarr in one go; ``write_restored`` is the
resumable writer of ``tilesr restore`` and ``open_restored`` reads its restoration and
uncertainty back (output layout in :mod:`tilesr.io.restored`, :mod:`tilesr.io.layout`).
The names are imported on first use, so that :mod:`tilesr.io.axes` (NGFF metadata, read
by the command line's option checks) does not pull in dask and zarr.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tilesr.io.ome_writer import write_ome_zarr as write_ome_zarr
    from tilesr.io.readers import InputImage as InputImage
    from tilesr.io.readers import open_image as open_image
    from tilesr.io.restored import RestoredOutput as RestoredOutput
    from tilesr.io.restored import WriteReport as WriteReport
    from tilesr.io.restored import open_restored as open_restored
    from tilesr.io.restored import write_restored as write_restored

_EXPORTS = {
    "InputImage": "tilesr.io.readers",
    "open_image": "tilesr.io.readers",
    "write_ome_zarr": "tilesr.io.ome_writer",
    "RestoredOutput": "tilesr.io.restored",
    "WriteReport": "tilesr.io.restored",
    "open_restored": "tilesr.io.restored",
    "write_restored": "tilesr.io.restored",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tilesr.io' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
