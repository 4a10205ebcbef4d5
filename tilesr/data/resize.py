"""Resampling: bicubic upsampling by an integer factor with a finite (4-tap) kernel, binning.

Every output pixel depends on exactly 4x4 input pixels, so upsampling a chunk read with
a 2-pixel margin gives bit-for-bit the same values as upsampling the whole image (a
spline zoom, as in ``scipy.ndimage.zoom``, has infinite support and does not). Training
and the engine share this function (through :mod:`tilesr.data.conditioning`) so the
network sees the same conditioning in both.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray

#: input pixels the 4-tap kernel reaches on each side: a chunk read with this margin
#: upsamples exactly as the whole image does
BICUBIC_MARGIN = 2


def _keys_kernel(d: NDArray[np.float64], a: float = -0.5) -> NDArray[np.float64]:
    """Keys' cubic convolution kernel (a = -0.5, as in Matlab's and PIL's bicubic)."""
    d = np.abs(d)
    return np.where(
        d <= 1,
        (a + 2) * d**3 - (a + 3) * d**2 + 1,
        np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0),
    )


@lru_cache(maxsize=8)
def _phase_weights(factor: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Weights (factor, 4) and input offsets (factor, 4) for each output phase.

    Output pixel ``i*factor + p`` has centre ``(i*factor + p + 0.5) / factor - 0.5`` in
    input coordinates (pixel centres aligned, as in ``align_corners=False``).
    """
    phases = np.arange(factor)
    pos = (phases + 0.5) / factor - 0.5
    base = np.floor(pos).astype(np.int64)
    offsets = base[:, None] + np.arange(-1, 3)[None, :]
    weights = _keys_kernel(pos[:, None] - offsets)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32), offsets


def _upsample_axis(arr: NDArray[np.float32], factor: int, axis: int) -> NDArray[np.float32]:
    weights, offsets = _phase_weights(factor)
    n = arr.shape[axis]
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (BICUBIC_MARGIN, BICUBIC_MARGIN)
    padded = np.pad(arr, pad, mode=bicubic_padding(n))
    out_shape = list(arr.shape)
    out_shape[axis] = n * factor
    out = np.empty(out_shape, dtype=np.float32)
    moved = np.moveaxis(padded, axis, 0)
    out_moved = np.moveaxis(out, axis, 0)
    idx = np.arange(n)
    for p in range(factor):
        acc = np.zeros_like(moved[:n])
        for k in range(4):
            acc += weights[p, k] * moved[idx + offsets[p, k] + BICUBIC_MARGIN]
        out_moved[p::factor] = acc
    return out


def upsample_bicubic(image: NDArray, factor: int) -> NDArray[np.float32]:
    """Upsample the last two axes of ``image`` by an integer ``factor`` (edges reflected)."""
    arr = np.asarray(image, dtype=np.float32)
    if factor == 1:
        return arr.copy()
    if factor < 1:
        raise ValueError(f"upsampling factor must be a positive integer, got {factor}")
    return _upsample_axis(_upsample_axis(arr, factor, arr.ndim - 2), factor, arr.ndim - 1)


def upsample_bicubic_window(
    padded: NDArray, factor: int, margin: int = BICUBIC_MARGIN
) -> NDArray[np.float32]:
    """Upsample a window read with ``margin`` extra input pixels on each side, then drop them.

    The result equals the corresponding part of :func:`upsample_bicubic` on the full
    image whenever the margin reaches real (not reflected) pixels.
    """
    up = upsample_bicubic(padded, factor)
    cut = margin * factor
    return up[..., cut : up.shape[-2] - cut, cut : up.shape[-1] - cut]


def bicubic_padding(n: int) -> Literal["reflect", "edge"]:
    """``np.pad`` mode beyond the edge of an axis of ``n`` pixels: reflect (edge when tiny)."""
    return "reflect" if n > BICUBIC_MARGIN else "edge"


def bin_mean(image: NDArray, factor: int) -> NDArray:
    """Mean over ``factor`` x ``factor`` bins of the last two axes (camera binning).

    Trailing rows and columns that do not fill a bin are dropped; the result has the
    input's floating dtype (float64 for integers).
    """
    if factor < 1:
        raise ValueError(f"binning factor must be a positive integer, got {factor}")
    arr = np.asarray(image)
    h, w = (n - n % factor for n in arr.shape[-2:])
    lead = arr.shape[:-2]
    bins = arr[..., :h, :w].reshape(*lead, h // factor, factor, w // factor, factor)
    return bins.mean(axis=(-3, -1))
