"""Tile windows cover every pixel and sit on a global grid."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilesr.engine.tiling import Span, axis_starts, bounding_box, tile_grid
from tilesr.errors import TilesrError


def _coverage(shape, tiles):
    covered = np.zeros(shape, dtype=int)
    for t in tiles:
        covered[t.outer_slices()] += 1
    return covered


@pytest.mark.parametrize(
    "shape,tile,overlap",
    [((37, 53), 16, 4), ((37, 53), 8, 7), ((5, 7), 32, 8), ((32, 32), 32, 8), ((33, 100), 32, 0)],
)
def test_windows_cover_every_pixel_and_overlap_by_at_least_the_overlap(shape, tile, overlap):
    tiles = tile_grid(shape, tile, overlap)
    covered = _coverage((max(shape[0], tile), max(shape[1], tile)), tiles)
    assert np.all(covered[: shape[0], : shape[1]] >= 1)
    for t in tiles:
        assert all(o.size == tile for o in t.outer)
    for n in shape:
        starts = axis_starts(n, tile, overlap)
        # neighbours overlap by the overlap, or more where the last is shifted back
        assert all(b - a <= tile - overlap for a, b in pairwise(starts))


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 90),
    w=st.integers(1, 90),
    tile=st.integers(2, 40),
    data=st.data(),
)
def test_coverage_on_random_shapes(h, w, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    tiles = tile_grid((h, w), tile, overlap)
    covered = _coverage((max(h, tile), max(w, tile)), tiles)
    assert np.all(covered[:h, :w] >= 1)
    # a window leaves the image only where the image is smaller than one tile
    assert all(t.outer[0].stop <= max(h, tile) and t.outer[1].stop <= max(w, tile) for t in tiles)
    starts = axis_starts(h, tile, overlap)
    if h > tile:
        # all but the last tile are on the stride; the last ends at the edge
        assert all(s % (tile - overlap) == 0 for s in starts[:-1])
        assert starts[-1] + tile == h


def test_smaller_than_tile_gets_one_padded_tile():
    (only,) = tile_grid((5, 7), 32, 8)
    assert only.outer == (Span(0, 32), Span(0, 32))


def test_region_selects_the_same_global_tiles():
    shape = (200, 300)
    full = tile_grid(shape, 32, 8)
    region = (Span(50, 90), Span(120, 130))
    part = tile_grid(shape, 32, 8, region=region)
    assert part and set(part) <= set(full)
    expected = [
        t for t in full if t.outer[0].intersects(region[0]) and t.outer[1].intersects(region[1])
    ]
    assert part == expected
    box = bounding_box(part)
    assert box[0].start <= 50 and box[0].stop >= 90


@pytest.mark.parametrize("tile,overlap", [(16, 16), (16, 20), (16, -1), (0, 0)])
def test_bad_geometry_is_refused(tile, overlap):
    with pytest.raises(TilesrError, match=str(overlap) if overlap else "tile"):
        tile_grid((40, 40), tile, overlap)
