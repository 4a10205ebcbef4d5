"""Smooth tile weights and their normalisation (MultiDiffusion / Mixture of Diffusers).

A tile's weight is 1 in its middle and falls off as a squared sine over the overlap at
each edge, with a small floor so every pixel keeps some weight (the image edges are
covered by one ramp only). With the regular stride, the ramp down of one tile and the
ramp up of the next sum to one (sin^2 + cos^2), so the blend is already a partition of
unity; shifted-back edge tiles and the floor are handled by dividing by the summed
weight. Weights are float64 so blending equal predictions gives them back exactly.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from tilesr.engine.tiling import TileWindow

#: smallest weight of any pixel of a tile
WEIGHT_FLOOR = 1e-3


@lru_cache(maxsize=16)
def _ramp(tile_size: int, overlap: int, floor: float) -> NDArray[np.float64]:
    w = np.ones(tile_size, dtype=np.float64)
    if overlap > 0:
        i = np.arange(overlap, dtype=np.float64)
        up = np.sin(0.5 * np.pi * (i + 0.5) / overlap) ** 2
        w[:overlap] = up
        w[tile_size - overlap :] = up[::-1]
    w = np.maximum(w, floor)
    w.setflags(write=False)
    return w


def tile_weight(
    tile_size: int, overlap: int, *, floor: float = WEIGHT_FLOOR
) -> NDArray[np.float64]:
    """The (tile_size, tile_size) blending window of one tile (separable, read-only)."""
    ramp = _ramp(tile_size, overlap, floor)
    return np.outer(ramp, ramp)


def weight_sum(
    tiles: list[TileWindow],
    origin: tuple[int, int],
    shape: tuple[int, int],
    tile_size: int,
    overlap: int,
) -> NDArray[np.float64]:
    """Summed tile weights on a canvas of ``shape`` whose corner sits at global ``origin``."""
    total = np.zeros(shape, dtype=np.float64)
    weight = tile_weight(tile_size, overlap)
    for tile in tiles:
        total[tile.outer_slices(origin)] += weight
    return total


def blend(
    values: list[NDArray[np.floating]],
    tiles: list[TileWindow],
    origin: tuple[int, int],
    shape: tuple[int, int],
    tile_size: int,
    overlap: int,
) -> NDArray[np.float32]:
    """Blend per-tile arrays (..., T, T) into one canvas (..., *shape) with normalised weights."""
    lead = values[0].shape[:-2]
    acc = np.zeros((*lead, *shape), dtype=np.float64)
    weight = tile_weight(tile_size, overlap)
    for value, tile in zip(values, tiles, strict=True):
        acc[(..., *tile.outer_slices(origin))] += weight * value
    return (acc / weight_sum(tiles, origin, shape, tile_size, overlap)).astype(np.float32)
