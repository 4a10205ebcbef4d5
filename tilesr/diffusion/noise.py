"""Counter-based Gaussian noise keyed to global pixel coordinates.

The noise of a pixel is a pure function of (key, y, x), where the key folds in the
seed, the sample index, the step and the plane (z/c/t) index. Any window of the image
can be generated on its own, so a tiled, chunked, batched or resumed run draws exactly
the same numbers as one that holds the whole image. A sequential generator (NumPy's
Philox/PCG) cannot be indexed by coordinate, hence this small hash.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_ROW = 0xD1B54A32D192ED03  # odd multiplier that spreads y over the counter


def _mix_int(z: int) -> int:
    """SplitMix64 finaliser on a Python int."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64 finaliser, vectorised (uint64 arithmetic wraps modulo 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fold_key(parts: Sequence[int]) -> int:
    """Fold integer key parts (seed, sample, step, ...) into one 64-bit key."""
    key = 0x243F6A8885A308D3
    for part in parts:
        key = _mix_int((key + _GOLDEN + (int(part) & _MASK)) & _MASK)
    return key


def keyed_normal(
    key: Sequence[int], origin: tuple[int, int], shape: tuple[int, int]
) -> NDArray[np.float32]:
    """Standard normal noise for the window ``origin + [0, shape)`` under ``key``.

    Coordinates may be negative (padding above or left of the image).
    """
    k1 = np.uint64(fold_key([*key, 1]))
    k2 = np.uint64(fold_key([*key, 2]))
    ys = np.arange(origin[0], origin[0] + shape[0], dtype=np.int64).astype(np.uint64)
    xs = np.arange(origin[1], origin[1] + shape[1], dtype=np.int64).astype(np.uint64)
    counter = _mix(ys[:, None] * np.uint64(_ROW) + xs[None, :])
    scale = 2.0**-53
    u1 = ((_mix(counter ^ k1) >> np.uint64(11)).astype(np.float64) + 0.5) * scale
    u2 = (_mix(counter ^ k2) >> np.uint64(11)).astype(np.float64) * scale
    # Box-Muller; u1 is in (0, 1) so the log is finite
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)


def keyed_normal_batch(
    keys: Sequence[Sequence[int]], origin: tuple[int, int], shape: tuple[int, int]
) -> NDArray[np.float32]:
    """Stack :func:`keyed_normal` for several keys into an array of shape (N, H, W)."""
    return np.stack([keyed_normal(k, origin, shape) for k in keys])
