"""Simulated LR/HR pairs: small in-memory ones, and large lazy chunk-consistent images."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from tilesr.data.datasets import ImagePair
from tilesr.errors import TilesrError
from tilesr.simulate.forward import (
    ForwardModel,
    check_level,
    check_scale,
    render_hr,
    render_lr,
    render_pair,
)
from tilesr.simulate.structures import StructureParams

# stream tags keep the fields of different uses apart in the key space
PAIRS_STREAM = 0x50
LARGE_STREAM = 0x4C


def simulate_pairs(
    n: int,
    *,
    size: int,
    scale: int = 2,
    noise_level: int = 5,
    seed: int = 0,
    model: ForwardModel | None = None,
    params: StructureParams | None = None,
) -> list[ImagePair]:
    """Simulate ``n`` independent widefield -> SIM-like pairs.

    Parameters
    ----------
    n
        Number of pairs.
    size
        HR side in pixels (a multiple of ``scale``); LR is ``size // scale``.
    scale
        Integer resolution factor.
    noise_level
        1 (noisiest) .. 9 (cleanest); see :mod:`tilesr.simulate.forward`.
    seed
        Seed; image ``i`` is the same for any ``n > i``.
    model, params
        Optics/camera and structure statistics (defaults if omitted).

    Returns
    -------
    list of ImagePair
        Named ``sim_0000``, ``sim_0001``, ...
    """
    s = check_scale(scale)
    check_level(noise_level)
    _check_size(size, s)
    if n < 0:
        raise TilesrError(f"number of pairs must be >= 0, got {n}")
    pairs = []
    for i in range(n):
        field = (int(seed), PAIRS_STREAM, i)
        hr, (lr,) = render_pair(
            field,
            size,
            scale=s,
            noise_levels=[noise_level],
            noise_key=field,
            model=model,
            params=params,
        )
        pairs.append(ImagePair(lr, hr, f"sim_{i:04d}"))
    return pairs


def _check_size(size: int, scale: int) -> None:
    if size < scale or size % scale:
        raise TilesrError(f"size must be a positive multiple of the scale {scale}, got {size}")


def simulate_large(
    shape_hr: tuple[int, int],
    *,
    scale: int = 2,
    noise_level: int = 5,
    seed: int = 0,
    chunk: int = 1024,
    model: ForwardModel | None = None,
    params: StructureParams | None = None,
) -> tuple[da.Array, da.Array]:
    """A large simulated image as lazy dask arrays, rendered chunk by chunk.

    Structures and noise are functions of global pixel coordinates, so the arrays
    are the same whatever ``chunk`` is (no seams, nothing held whole in memory).

    Parameters
    ----------
    shape_hr
        HR shape ``(H, W)``, each a multiple of ``scale``.
    scale
        Integer resolution factor; LR shape is ``(H // scale, W // scale)``.
    noise_level
        1 (noisiest) .. 9 (cleanest).
    seed
        Seed of structures and noise.
    chunk
        HR chunk side (a multiple of ``scale``); LR chunks are ``chunk // scale``.
    model, params
        Optics/camera and structure statistics (defaults if omitted).

    Returns
    -------
    (lr, hr)
        float32 dask arrays: noisy LR counts and the clean HR ground truth.
    """
    s = check_scale(scale)
    check_level(noise_level)
    if len(shape_hr) != 2:
        raise TilesrError(f"shape must be (height, width), got {shape_hr}")
    h, w = (int(v) for v in shape_hr)
    for v in (h, w):
        _check_size(v, s)
    if chunk < s or chunk % s:
        raise TilesrError(f"chunk must be a positive multiple of the scale {s}, got {chunk}")
    m = ForwardModel() if model is None else model
    field = (int(seed), LARGE_STREAM)
    noise_key = (*field, int(noise_level))

    def hr_block(block_info: dict[Any, Any] | None = None) -> np.ndarray:
        (y0, y1), (x0, x1) = block_info[None]["array-location"]  # type: ignore[index]
        return render_hr(field, (y0, x0), (y1 - y0, x1 - x0), model=m, params=params)

    def lr_block(block_info: dict[Any, Any] | None = None) -> np.ndarray:
        (y0, y1), (x0, x1) = block_info[None]["array-location"]  # type: ignore[index]
        return render_lr(
            field,
            (y0, x0),
            (y1 - y0, x1 - x0),
            scale=s,
            noise_level=noise_level,
            noise_key=noise_key,
            model=m,
            params=params,
        )

    meta = np.empty((0, 0), dtype=np.float32)
    token = tokenize(seed, noise_level, s, h, w, chunk, m, params)
    hr = da.map_blocks(
        hr_block,
        chunks=da.core.normalize_chunks(chunk, (h, w)),
        dtype=np.float32,
        meta=meta,
        name=f"tilesr-sim-hr-{token}",
    )
    lr = da.map_blocks(
        lr_block,
        chunks=da.core.normalize_chunks(chunk // s, (h // s, w // s)),
        dtype=np.float32,
        meta=meta,
        name=f"tilesr-sim-lr-{token}",
    )
    return lr, hr
