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
    image: ArrayLike, edges_y: Sequence[int], edges_x: Sequence[int]
) -> float:
    """Mean |difference| of adjacent pixels across the given edges over the same elsewhere.

    Parameters
    ----------
    image
        A 2-D image.
    edges_y, edges_x
        Row and column positions of the seams (see :func:`tile_edges`).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"seam_ratio needs a 2-D image, got shape {img.shape}")
    dy = np.abs(np.diff(img, axis=0))  # row r holds |img[r + 1] - img[r]|
    dx = np.abs(np.diff(img, axis=1))
    on_y = np.zeros(dy.shape[0], dtype=bool)
    on_y[[p - 1 for p in edges_y]] = True
    on_x = np.zeros(dx.shape[1], dtype=bool)
    on_x[[p - 1 for p in edges_x]] = True
    seam = dy[on_y].sum() + dx[:, on_x].sum()
    n_seam = dy[on_y].size + dx[:, on_x].size
    rest = dy[~on_y].sum() + dx[:, ~on_x].sum()
    n_rest = dy[~on_y].size + dx[:, ~on_x].size
    if n_seam == 0 or n_rest == 0 or rest == 0:
        raise ValueError("seam_ratio needs seams, non-seam pixel pairs and a non-flat image")
    return float((seam / n_seam) / (rest / n_rest))
