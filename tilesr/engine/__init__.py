"""The inference engine: lazy, tiled, fused diffusion restoration of large images with dask.

:func:`restore` builds the dask graph; :mod:`tilesr.engine.tiling` and
:mod:`tilesr.engine.blending` hold the tile geometry and weights,
:mod:`tilesr.engine.canvas` the per-block sampling, :mod:`tilesr.engine.scheduling`
the scheduler setup and :mod:`tilesr.engine.progress` the progress bar.
"""

from tilesr.engine.restore import RestoreResult, restore

__all__ = ["RestoreResult", "restore"]
