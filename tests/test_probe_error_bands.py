"""tools/probe_error_bands.py: the bands split an image's mean square by scale."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from probe_error_bands import EDGES, band_power


@pytest.mark.parametrize("shape", [(64, 64), (63, 66)])
def test_bands_sum_to_the_mean_square(shape):
    image = np.random.default_rng(0).normal(size=shape)
    assert band_power(image).sum() == pytest.approx(np.mean(image**2), rel=1e-9)


def test_a_field_scale_ramp_lands_in_the_lowest_band_and_pixel_noise_in_the_highest():
    y, x = np.mgrid[:256, :256] / 256.0
    ramp = band_power(np.sin(2 * np.pi * x) + np.cos(2 * np.pi * y))  # 1 cycle per field
    assert ramp[0] / ramp.sum() > 0.999
    checker = band_power((-1.0) ** (np.arange(256)[:, None] + np.arange(256)[None, :]))
    assert checker[-1] / checker.sum() > 0.999 and len(checker) == len(EDGES) - 1
