"""Data consistency: the binned restoration agrees with the input on large scales only."""

from __future__ import annotations

import numpy as np
import pytest

from tilesr.data.resize import bin_mean
from tilesr.diffusion.consistency import consistency_reach, make_consistent


def _smooth_field(shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (0.3 + 0.2 * np.sin(yy / 15.0) * np.cos(xx / 11.0)).astype(np.float32)


def test_zero_sigma_changes_nothing() -> None:
    samples = np.random.default_rng(0).normal(size=(2, 16, 16)).astype(np.float32)
    out = make_consistent(samples, samples[0], sigma=0.0, scale=2)
    assert np.array_equal(out, samples)


def test_a_constant_input_is_restored_exactly() -> None:
    # what a blank network (all zeros) misses of a flat input comes back in full
    cond = np.full((32, 40), 0.25, np.float32)
    out = make_consistent(np.zeros((3, 32, 40), np.float32), cond, sigma=2.0, scale=2)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


def test_detail_that_bins_to_the_input_is_kept() -> None:
    # a checkerboard of the output grid bins to zero: the samples already agree with the
    # input, so nothing may change, however fine the detail
    cond = _smooth_field((32, 32))
    checker = 0.1 * ((np.indices((32, 32)).sum(axis=0) % 2) * 2 - 1)
    samples = np.stack([cond + checker, cond - checker]).astype(np.float32)
    assert np.allclose(bin_mean(samples[0], 2), bin_mean(cond, 2))
    out = make_consistent(samples, cond, sigma=1.5, scale=2)
    np.testing.assert_allclose(out, samples, atol=1e-6)


def test_large_scales_follow_the_input_fine_ones_the_samples() -> None:
    rng = np.random.default_rng(1)
    cond = _smooth_field((64, 64))
    detail = rng.normal(0, 0.05, (64, 64)).astype(np.float32)
    biased = (cond - 0.2 + detail)[None]  # a network that removed a smooth background
    out = make_consistent(biased, cond, sigma=2.0, scale=2)[0]
    inner = (slice(16, -16), slice(16, -16))
    # the missing offset is back; the detail survives at the scales below sigma
    assert abs(float((out - cond)[inner].mean())) < 0.01
    assert np.corrcoef((out - cond)[inner].ravel(), detail[inner].ravel())[0, 1] > 0.8


@pytest.mark.parametrize("origin", [(0, 0), (5, 7), (10, 3)])
def test_a_canvas_gives_the_whole_image_pixels_beyond_the_reach(origin) -> None:
    # the bins follow the image's grid whatever the canvas's origin, so a block computed
    # on its canvas equals the whole image computed at once
    rng = np.random.default_rng(2)
    cond = rng.normal(size=(60, 70)).astype(np.float32)
    samples = rng.normal(size=(2, 60, 70)).astype(np.float32)
    whole = make_consistent(samples, cond, sigma=1.0, scale=2)
    (y, x), reach = origin, consistency_reach(1.0, 2)
    part = make_consistent(samples[:, y : y + 40, x : x + 50], cond[y : y + 40, x : x + 50],
                           sigma=1.0, scale=2, origin=origin)  # fmt: skip
    inner = (slice(None), slice(reach, 40 - reach), slice(reach, 50 - reach))
    region = (slice(None), slice(y + reach, y + 40 - reach), slice(x + reach, x + 50 - reach))
    assert np.array_equal(part[inner], whole[region])
