"""The uncertainty map is the predicted std of the mean's error: calibrated for true posteriors."""

from __future__ import annotations

import numpy as np
import pytest

from tilesr.diffusion.uncertainty import pooling_reach, predictive_std


@pytest.mark.parametrize("n", [2, 4, 8])
def test_covers_the_truth_as_a_gaussian_should_when_samples_are_exact(n):
    # truth and samples are independent draws of one posterior N(mu, s^2) per pixel:
    # the error of the n-sample mean has variance s^2 (1 + 1/n)
    rng = np.random.default_rng(n)
    shape = (256, 256)
    s = 0.1 + 0.4 * rng.uniform(size=shape)
    truth = s * rng.standard_normal(shape)
    samples = s * rng.standard_normal((n, *shape))
    sigma = predictive_std(samples, pool_px=0)
    z = np.abs(truth - samples.mean(axis=0)) / sigma
    # per-pixel variance from n draws makes |z| Student-t like with n - 1 dof, so only
    # the variance is exact here: E[z^2] * (n - 3) / (n - 1) = 1 for the t distribution
    if n > 3:
        assert np.mean(z**2) * (n - 3) / (n - 1) == pytest.approx(1.0, rel=0.05)
    # the plain sample std (ddof 0) would under-cover: the correction is what matters
    plain = np.abs(truth - samples.mean(axis=0)) / samples.std(axis=0)
    assert np.mean(plain <= 1) < np.mean(z <= 1)


def test_pooling_makes_the_coverage_gaussian_when_the_spread_is_smooth():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    s = 0.2 + 0.1 * np.sin(yy / 40.0) * np.cos(xx / 30.0)  # smooth, like a blurred image
    truth = s * rng.standard_normal(s.shape)
    samples = s * rng.standard_normal((4, *s.shape))
    z = np.abs(truth - samples.mean(axis=0)) / predictive_std(samples, pool_px=3)
    assert np.mean(z <= 1) == pytest.approx(0.683, abs=0.015)
    assert np.mean(z <= 2) == pytest.approx(0.954, abs=0.01)
    z_raw = np.abs(truth - samples.mean(axis=0)) / predictive_std(samples)
    assert np.mean(z_raw <= 2) < 0.93  # 3 degrees of freedom: heavy tails


def test_scale_multiplies_and_one_sample_has_no_spread():
    samples = np.random.default_rng(1).standard_normal((3, 8, 8))
    np.testing.assert_allclose(
        predictive_std(samples, scale=2.5), 2.5 * predictive_std(samples), rtol=1e-6
    )
    assert not predictive_std(samples[:1]).any()
    assert pooling_reach(0) == 0 and pooling_reach(1.5) == 6
