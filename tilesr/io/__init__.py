"""Image input and output: lazy readers and OME-Zarr writers.

``open_image`` reads OME-Zarr (NGFF 0.4/0.5), plain zarr and TIFF/OME-TIFF lazily;
``write_ome_zarr`` writes a multiscale OME-Zarr in one go; ``write_restored`` is the
resumable writer of the restore pipeline (output layout in :mod:`tilesr.io.restored`).
"""

from __future__ import annotations

from tilesr.io.ome_writer import write_ome_zarr
from tilesr.io.readers import InputImage, open_image
from tilesr.io.restored import WriteReport, write_restored

__all__ = ["InputImage", "WriteReport", "open_image", "write_ome_zarr", "write_restored"]
