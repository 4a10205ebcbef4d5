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
    """SplitMix64 finaliser, vectorised and in place (uint64 arithmetic wraps modulo 2**64)."""
    tmp = np.empty_like(z)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        np.right_shift(z, np.uint64(shift), out=tmp)
        np.bitwise_xor(z, tmp, out=z)
        np.multiply(z, np.uint64(mult), out=z)
    np.right_shift(z, np.uint64(31), out=tmp)
    return np.bitwise_xor(z, tmp, out=z)


def fold_key(parts: Sequence[int]) -> int:
    """Fold integer key parts (seed, sample, step, ...) into one 64-bit key."""
    key = 0x243F6A8885A308D3
    for part in parts:
        key = _mix_int((key + _GOLDEN + (int(part) & _MASK)) & _MASK)
    return key


#: pixels generated at once: the uint64 and float64 temporaries of a strip stay in cache
#: and a canvas of any size costs only its float32 output
STRIP_PIXELS = 1 << 16


def keyed_normal(
    key: Sequence[int], origin: tuple[int, int], shape: tuple[int, int]
) -> NDArray[np.float32]:
    """Standard normal noise for the window ``origin + [0, shape)`` under ``key``.

    Coordinates may be negative (padding above or left of the image).
    """
    return keyed_normal_batch([key], origin, shape)[0]


def keyed_normal_batch(
    keys: Sequence[Sequence[int]], origin: tuple[int, int], shape: tuple[int, int]
) -> NDArray[np.float32]:
    """:func:`keyed_normal` for several keys, an array of shape (N, H, W).

    Generated in strips of rows (each pixel's value depends on its coordinates and key
    only, so the strips are invisible); a strip's counter is shared by all keys.
    """
    words = [(np.uint64(fold_key([*k, 1])), np.uint64(fold_key([*k, 2]))) for k in keys]
    out = np.empty((len(words), *shape), dtype=np.float32)
    xs = np.arange(origin[1], origin[1] + shape[1], dtype=np.int64).astype(np.uint64)
    rows = max(1, STRIP_PIXELS // max(1, shape[1]))
    for r0 in range(0, shape[0], rows):
        r1 = min(r0 + rows, shape[0])
        ys = np.arange(origin[0] + r0, origin[0] + r1, dtype=np.int64).astype(np.uint64)
        counter = _mix(ys[:, None] * np.uint64(_ROW) + xs[None, :])
        for n, (k1, k2) in enumerate(words):
            out[n, r0:r1] = _box_muller(counter, k1, k2)
    return out


def _box_muller(counter: NDArray[np.uint64], k1: np.uint64, k2: np.uint64) -> NDArray[np.float64]:
    """Two keyed uniforms of each counter turned into one standard normal (Box-Muller)."""
    scale = 2.0**-53
    u1 = ((_mix(counter ^ k1) >> np.uint64(11)).astype(np.float64) + 0.5) * scale
    u2 = (_mix(counter ^ k2) >> np.uint64(11)).astype(np.float64) * scale
    # u1 is in (0, 1) so the log is finite
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
