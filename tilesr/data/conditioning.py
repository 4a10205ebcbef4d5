"""The network's conditioning image, made one way for training, validation, the engine and tools.

The low-resolution image is normalised to [-1, 1] by an intensity range, upsampled to the
output grid with the exact 4-tap bicubic (:mod:`tilesr.data.resize`) and clipped to
[-1, 1], the data range the network was trained on: brighter than the high percentile
saturates. The intensity range is the caller's: the percentiles of the whole image
(one range per image, never one per tile, which would make seams).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tilesr.data.normalize import IntensityRange
from tilesr.data.resize import upsample_bicubic_window


def conditioning(
    lr: ArrayLike, scale: int, intensity: IntensityRange, *, margin: int = 0
) -> NDArray[np.float32]:
    """Normalise ``lr`` by ``intensity``, upsample it ``scale`` x (bicubic), clip to [-1, 1].

    Parameters
    ----------
    lr
        Raw low-resolution intensities; the last two axes are y and x.
    scale
        Output pixels per input pixel along y and x (1: normalise and clip only).
    intensity
        The raw intensities mapped to -1 and +1.
    margin
        Input pixels on each side of ``lr`` read only for the upsampling and dropped
        from the result (:data:`~tilesr.data.resize.BICUBIC_MARGIN` makes a window of a
        larger image exactly equal to the same part of the whole image's conditioning).
    """
    up = upsample_bicubic_window(intensity.normalize(lr), scale, margin)
    return np.clip(up, -1.0, 1.0)
