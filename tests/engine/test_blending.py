"""Blend weights: positive, a partition of unity after normalisation, flat stays flat."""

from __future__ import annotations

import numpy as np
import pytest

from tilesr.engine.blending import WEIGHT_FLOOR, blend, tile_weight, weight_sum
from tilesr.engine.tiling import tile_grid
from tilesr.seams import seam_ratio, tile_edges


@pytest.mark.parametrize(
    "shape,tile,overlap", [((37, 53), 16, 4), ((70, 83), 32, 8), ((9, 9), 32, 8)]
)
def test_blending_a_constant_gives_the_constant_exactly(shape, tile, overlap):
    tiles = tile_grid(shape, tile, overlap)
    canvas = (max(shape[0], tile), max(shape[1], tile))
    values = [np.full((2, tile, tile), 0.3712, dtype=np.float32) for _ in tiles]
    out = blend(values, tiles, (0, 0), canvas, tile, overlap)
    assert out.shape == (2, *canvas)
    assert np.all(out == np.float32(0.3712))


def test_weights_are_smooth_positive_and_peak_in_the_middle():
    w = tile_weight(32, 8)
    assert w.min() >= WEIGHT_FLOOR**2 and w.max() == 1.0
    assert np.all(w[8:24, 8:24] == 1.0)
    assert np.all(np.diff(w[16, :8]) > 0)


def test_regular_stride_is_already_a_partition_of_unity():
    # ramps of neighbours meet as sin^2 + cos^2: the raw sum is 1 away from the image edges
    tiles = tile_grid((24 * 6 + 8, 24 * 6 + 8), 32, 8)
    total = weight_sum(tiles, (0, 0), (152, 152), 32, 8)
    np.testing.assert_allclose(total[8:-8, 8:-8], 1.0, rtol=1e-12)


def test_seam_ratio_detects_steps_at_tile_edges():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((128, 128))
    edges = tile_edges(128, 32, 8)
    assert seam_ratio(img, edges, edges) == pytest.approx(1.0, abs=0.1)
    stepped = img.copy()
    for p in edges:
        stepped[p:] += 2.0  # a visible step at every horizontal edge
    assert seam_ratio(stepped, edges, edges) > 1.2
