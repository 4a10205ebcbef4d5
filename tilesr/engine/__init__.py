"""The inference engine: lazy, tiled, fused diffusion restoration of large images with dask.

:func:`restore` opens the model (:mod:`tilesr.engine.model`), resolves the options into a
plan (:mod:`tilesr.engine.plan`) and builds the dask graph of output blocks
(:mod:`tilesr.engine.restore`); :mod:`tilesr.engine.tiling` and
:mod:`tilesr.engine.blending` hold the tile geometry and weights,
:mod:`tilesr.engine.canvas` the per-block sampling and :mod:`tilesr.engine.scheduling`
the scheduler setup.
"""

from tilesr.engine.restore import RestoreResult, restore
from tilesr.options import RestoreOptions

__all__ = ["RestoreOptions", "RestoreResult", "restore"]
