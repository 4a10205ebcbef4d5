"""The one conditioning image (normalise, bicubic upsample, clip) and 2x2 binning."""

from __future__ import annotations

import numpy as np
import pytest

from tilesr.data.conditioning import conditioning
from tilesr.data.normalize import IntensityRange
from tilesr.data.resize import BICUBIC_MARGIN, bin_mean, upsample_bicubic


@pytest.fixture
def lr():
    return np.random.default_rng(0).uniform(0, 1000, (23, 31)).astype(np.float32)


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_is_normalised_upsampled_and_clipped(lr, scale):
    intensity = IntensityRange(200.0, 800.0)
    cond = conditioning(lr, scale, intensity)
    expected = np.clip(upsample_bicubic(intensity.normalize(lr), scale), -1.0, 1.0)
    assert cond.dtype == np.float32 and cond.shape == (23 * scale, 31 * scale)
    np.testing.assert_array_equal(cond, expected)
    # the range is narrower than the data: both bounds are reached, never passed
    assert cond.min() == -1.0 and cond.max() == 1.0


@pytest.mark.parametrize("scale", [2, 4])
def test_a_window_read_with_the_margin_equals_the_whole_images_crop(lr, scale):
    intensity = IntensityRange(0.0, 1000.0)
    whole = conditioning(lr, scale, intensity)
    m = BICUBIC_MARGIN
    y, x, h, w = 5, 7, 9, 11  # away from the edges: the margin reads real pixels
    window = conditioning(lr[y - m : y + h + m, x - m : x + w + m], scale, intensity, margin=m)
    crop = whole[y * scale : (y + h) * scale, x * scale : (x + w) * scale]
    np.testing.assert_array_equal(window, crop)


def test_binning_averages_whole_bins_only():
    img = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    binned = bin_mean(img, 2)
    assert binned.shape == (2, 3)
    assert binned[0, 0] == np.mean(img[:2, :2]) and binned[1, 2] == np.mean(img[2:4, 4:6])
    stack = np.stack([img, 2 * img])
    np.testing.assert_array_equal(bin_mean(stack, 2)[1], 2 * binned)
    with pytest.raises(ValueError, match="binning factor"):
        bin_mean(img, 0)
