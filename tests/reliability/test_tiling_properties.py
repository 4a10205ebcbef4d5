"""Property tests of the tiling maths on random shapes, tiles, overlaps, scales and chunkings.

* the blocks of the output and the tiles of each block's plan cover every output pixel;
  each block reads an LR window inside the image that holds what its canvas needs;
* the normalised blend weights sum to one at every pixel;
* with an identity model (eps chosen so that the predicted clean image is exactly the
  conditioning), the tiled restoration returns the bicubic-upsampled input whatever
  the geometry, the chunking, the sampler and the fusion mode.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.onnx_models import analytic_model
from tests.onnx_models import test_metadata as model_metadata
from tilesr.data.normalize import IntensityRange
from tilesr.data.resize import upsample_bicubic
from tilesr.engine.blending import tile_weight, weight_sum
from tilesr.engine.restore import plan_block, restore
from tilesr.engine.tiling import block_spans
from tilesr.options import RestoreOptions


def _tile_and_overlap(data, tile):
    return data.draw(st.integers(0, tile - 1), label="overlap")


@settings(max_examples=80, deadline=None)
@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    scale=st.integers(1, 4),
    tile=st.integers(8, 48),
    block=st.integers(8, 100),
    fused=st.booleans(),
    data=st.data(),
)
def test_blocks_and_their_tiles_cover_every_output_pixel(h, w, scale, tile, block, fused, data):
    overlap = _tile_and_overlap(data, tile)
    hr = (h * scale, w * scale)
    context = tile if fused else 0
    owned = np.zeros(hr, dtype=int)
    for by in block_spans(hr[0], block):
        for bx in block_spans(hr[1], block):
            job = plan_block(0, (by, bx), hr, (h, w), scale, tile, overlap, context)
            owned[by.slice(), bx.slice()] += 1
            # the canvas holds the block, and the block's pixels are covered by tiles
            (cy, cx) = job.canvas
            assert cy.start <= by.start and by.stop <= cy.stop
            assert cx.start <= bx.start and bx.stop <= cx.stop
            covered = np.zeros((cy.size, cx.size), dtype=int)
            for t in job.tiles:
                covered[t.outer_slices((cy.start, cx.start))] += 1
            assert covered[by.slice(cy.start), bx.slice(cx.start)].min() >= 1
            # the LR read stays inside the image
            for span, n in zip(job.lr_read, (h, w), strict=True):
                assert 0 <= span.start < span.stop <= n
    assert np.all(owned == 1)  # blocks partition the output


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 120),
    w=st.integers(1, 120),
    tile=st.integers(8, 48),
    data=st.data(),
)
def test_normalised_blend_weights_sum_to_one(h, w, tile, data):
    from tilesr.engine.tiling import bounding_box, tile_grid

    overlap = _tile_and_overlap(data, tile)
    tiles = tile_grid((h, w), tile, overlap)
    (cy, cx) = bounding_box(tiles)
    origin, shape = (cy.start, cx.start), (cy.size, cx.size)
    total = weight_sum(tiles, origin, shape, tile, overlap)
    weight = tile_weight(tile, overlap)
    share = np.zeros(shape)
    for t in tiles:
        share[t.outer_slices(origin)] += weight / total[t.outer_slices(origin)]
    np.testing.assert_allclose(share, 1.0, rtol=0, atol=1e-12)
    assert (weight > 0).all()


@pytest.fixture(scope="module")
def identity_models(tmp_path_factory):
    """eps = (noisy - sqrt(abar) cond) / sqrt(1 - abar): the analytic model with std 0."""
    root = tmp_path_factory.mktemp("identity")
    return {
        (s, tile, overlap): analytic_model(
            root / f"id{s}_{tile}_{overlap}.onnx",
            std=0.0,
            metadata=model_metadata(scale=s, tile_size=tile, overlap=overlap),
        )
        for s in (1, 2, 3, 4)
        for tile, overlap in ((16, 4), (24, 0), (32, 8))
    }


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    h=st.integers(1, 45),
    w=st.integers(1, 45),
    scale=st.integers(1, 4),
    geometry=st.sampled_from([(16, 4), (24, 0), (32, 8)]),
    block=st.integers(8, 80),
    chunk_y=st.integers(1, 45),
    chunk_x=st.integers(1, 45),
    sampler=st.sampled_from(["ddim", "dpmpp", "ddpm"]),
    fuse=st.sampled_from(["step", "final"]),
    samples=st.integers(1, 2),
    seed=st.integers(0, 2**31 - 1),
)
def test_identity_model_restores_the_upsampled_input(
    identity_models, h, w, scale, geometry, block, chunk_y, chunk_x, sampler, fuse, samples, seed
):
    tile, overlap = geometry
    rng = np.random.default_rng(seed)
    lr = rng.uniform(100, 4000, (h, w)).astype(np.float32)
    # a range wider than the data: bicubic overshoot stays inside [-1, 1] after normalising
    span = float(lr.max() - lr.min()) + 1.0
    window = IntensityRange(float(lr.min()) - span, float(lr.max()) + span)
    result = restore(
        da.from_array(lr, chunks=(chunk_y, chunk_x)),
        str(identity_models[(scale, tile, overlap)]),
        RestoreOptions(
            steps=3, sampler=sampler, fuse=fuse, samples=samples, seed=seed % 1000, block_size=block
        ),
        intensity_range=window,
    )
    out = result.image.compute()
    expected = upsample_bicubic(lr, scale) if scale > 1 else lr
    assert out.shape == (h * scale, w * scale)
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-4 * window.span)
