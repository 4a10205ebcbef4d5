"""A seam metric: are neighbouring-pixel differences larger where tiles end?

A visible seam is a step between two pixels that straddle a tile edge. The metric is
the mean absolute difference of adjacent pixels across tile edges divided by the same
statistic across all other pixel pairs: about 1 for a seamless restoration, above 1
when tile edges show.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from tilesr.engine.tiling import axis_starts


def tile_edges(length: int, tile_size: int, overlap: int) -> list[int]:
    """Positions p (0 < p < length) where a tile of the global grid starts or ends.

    A seam at ``p`` lies between pixels ``p - 1`` and ``p``.
    """
    edges: set[int] = set()
    for start in axis_starts(length, tile_size, overlap):
        edges.update((start, start + tile_size))
    return sorted(p for p in edges if 0 < p < length)


def seam_ratio(
    image: ArrayLike, edges_y: Sequence[int], edges_x: Sequence[int], *, window: int = 4
) -> float:
    """Mean |difference| of adjacent pixels across the edges over the same just beside them.

    The reference statistic comes from the pixel pairs within ``window`` pixels of each
    edge (not on an edge themselves), so the image content on both sides is alike and
    the ratio of a seamless image is close to 1 even for a few edges.

    Parameters
    ----------
    image
        A 2-D image.
    edges_y, edges_x
        Row and column positions of the seams (see :func:`tile_edges`); a seam at ``p``
        lies between pixels ``p - 1`` and ``p``.
    window
        How far beside an edge the reference pairs reach.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"seam_ratio needs a 2-D image, got shape {img.shape}")
    seam_sum = near_sum = 0.0
    seam_n = near_n = 0
    for diffs, edges in (
        (np.abs(np.diff(img, axis=0)), edges_y),  # row r: |img[r + 1] - img[r]|
        (np.abs(np.diff(img, axis=1)).T, edges_x),
    ):
        on = np.zeros(diffs.shape[0], dtype=bool)
        on[[p - 1 for p in edges]] = True
        near = np.zeros_like(on)
        for p in edges:
            near[max(p - 1 - window, 0) : p + window] = True
        near &= ~on
        seam_sum += diffs[on].sum()
        seam_n += diffs[on].size
        near_sum += diffs[near].sum()
        near_n += diffs[near].size
    if seam_n == 0 or near_n == 0 or near_sum == 0:
        raise ValueError("seam_ratio needs edges, pixel pairs beside them and a non-flat image")
    return float((seam_sum / seam_n) / (near_sum / near_n))
