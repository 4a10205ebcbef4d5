"""Coverage and rank correlation of an uncertainty map against the actual error."""

from __future__ import annotations

import numpy as np
import pytest

from tilesr.calibration import calibration, calibration_terms
from tilesr.errors import TilesrError


def _gaussian_errors(seed: int = 0, shape: tuple[int, int] = (256, 256)):
    rng = np.random.default_rng(seed)
    # sigma varies across the plane in 16x16 patches, so the ranking has something to find
    sigma = np.kron(rng.uniform(0.5, 3.0, (shape[0] // 16, shape[1] // 16)), np.ones((16, 16)))
    return rng.normal(size=shape) * sigma, sigma


def test_gaussian_errors_with_their_true_sigma_are_calibrated():
    error, sigma = _gaussian_errors()
    got = calibration([calibration_terms(error, sigma)])
    assert got["cover_1sigma"] == pytest.approx(0.6827, abs=0.01)
    assert got["cover_2sigma"] == pytest.approx(0.9545, abs=0.01)
    assert got["spearman_patch"] > 0.9


def test_a_map_too_narrow_under_covers_and_a_flat_one_ranks_nothing():
    error, sigma = _gaussian_errors(1)
    narrow = calibration([calibration_terms(error, sigma / 2)])
    assert narrow["cover_1sigma"] == pytest.approx(0.3829, abs=0.01)  # P(|N| < 0.5)
    flat = calibration([calibration_terms(error, np.ones_like(sigma))])
    assert np.isnan(flat["spearman_patch"])


def test_planes_pool_and_zero_sigma_counts_as_outside():
    error, sigma = _gaussian_errors(2, (64, 64))
    zero = calibration_terms(error, np.zeros_like(sigma))
    both = calibration([calibration_terms(error, sigma), zero])
    alone = calibration([calibration_terms(error, sigma)])
    assert both["cover_1sigma"] == pytest.approx(alone["cover_1sigma"] / 2)


def test_unequal_planes_are_refused():
    with pytest.raises(TilesrError, match="equal 2-D planes"):
        calibration_terms(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(TilesrError, match="no planes"):
        calibration([])
