from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from tilesr.data.datasets import ImagePair
from tilesr.errors import TilesrError
from tilesr.simulate import PHOTONS, ForwardModel, degrade, simulate_pairs
from tilesr.simulate.forward import (
    area_downsample,
    camera_noise,
    check_level,
    poisson_quantile,
)


@pytest.mark.parametrize("lam", [0.3, 3.0, 40.0, 800.0])
def test_poisson_quantile_has_poisson_moments(lam: float) -> None:
    u = np.random.default_rng(1).uniform(size=200_000)
    k = poisson_quantile(u, np.full(u.shape, lam))
    assert np.all(k == np.round(k)) and k.min() >= 0
    se = np.sqrt(lam / u.size)
    assert abs(k.mean() - lam) < 5 * se
    assert k.var() == pytest.approx(lam, rel=0.03)


def test_poisson_quantile_exact_at_low_and_close_at_high_counts() -> None:
    u = np.linspace(0.001, 0.999, 999)
    np.testing.assert_array_equal(
        poisson_quantile(u, np.full(u.shape, 7.0)), stats.poisson.ppf(u, 7.0)
    )
    high = poisson_quantile(u, np.full(u.shape, 900.0))
    assert np.abs(high - stats.poisson.ppf(u, 900.0)).max() <= 1.0


def test_camera_noise_is_keyed_to_coordinates() -> None:
    model = ForwardModel()
    lam = np.random.default_rng(2).uniform(0, 50, (40, 50))
    whole = camera_noise(lam, key=(1, 2), origin=(10, 20), model=model)
    part = camera_noise(lam[5:30, 7:41], key=(1, 2), origin=(15, 27), model=model)
    np.testing.assert_array_equal(part, whole[5:30, 7:41])
    other = camera_noise(lam, key=(1, 3), origin=(10, 20), model=model)
    assert not np.array_equal(whole, other)


def test_area_downsample_is_block_mean() -> None:
    img = np.random.default_rng(3).normal(size=(12, 9))
    expected = img.reshape(4, 3, 3, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(area_downsample(img, 3), expected, rtol=1e-12)


def _snr(level: int) -> float:
    pair = simulate_pairs(1, size=128, scale=2, noise_level=level, seed=4)[0]
    clean = area_downsample(pair.hr.astype(np.float64), 2)
    return float(np.corrcoef(clean.ravel(), pair.lr.ravel())[0, 1])


def test_snr_increases_with_noise_level() -> None:
    snr = [_snr(level) for level in (1, 3, 5, 7, 9)]
    assert all(a < b for a, b in itertools.pairwise(snr)), snr
    assert snr[0] < 0.7 < snr[-1]


def test_lr_shape_is_hr_over_scale_and_hr_is_clean() -> None:
    for scale in (1, 2, 3):
        pair = simulate_pairs(1, size=48, scale=scale, seed=5)[0]
        assert pair.hr.shape == (48, 48)
        assert pair.lr.shape == (48 // scale, 48 // scale)
        assert pair.lr.dtype == pair.hr.dtype == np.float32
        assert pair.hr.min() >= 0.0


def test_degrade_flat_image_gives_poisson_counts() -> None:
    model = ForwardModel()
    pair = degrade(np.full((200, 202), 3.0, np.float32), scale=2, noise_level=5, seed=0)
    assert pair.lr.shape == (100, 101) and pair.hr.shape == (200, 202)
    # a flat image: every pixel is at the 99.9th percentile, so expects the level's
    # photons plus background; variance is shot noise plus read noise
    mean = PHOTONS[5] * (1 + model.background)
    counts = pair.lr.astype(np.float64) - model.offset
    assert counts.mean() == pytest.approx(mean, rel=0.02)
    assert counts.var() == pytest.approx(mean + model.read_noise**2, rel=0.08)


def test_degrade_clips_negatives_and_crops_to_scale() -> None:
    rng = np.random.default_rng(6)
    img = rng.normal(10.0, 20.0, (65, 67)).astype(np.float32)
    pair = degrade(img, scale=2, noise_level=9, seed=1, name="x")
    assert pair.hr.shape == (64, 66) and pair.lr.shape == (32, 33)
    assert pair.hr.min() == 0.0
    np.testing.assert_array_equal(pair.hr, np.clip(img[:64, :66], 0, None))
    assert pair.name == "x"
    again = degrade(img, scale=2, noise_level=9, seed=1)
    np.testing.assert_array_equal(pair.lr, again.lr)


def test_degrade_bad_input() -> None:
    with pytest.raises(TilesrError, match="2D"):
        degrade(np.ones((2, 8, 8)), scale=2, noise_level=5, seed=0)
    with pytest.raises(TilesrError, match="empty"):
        degrade(-np.ones((8, 8)), scale=2, noise_level=5, seed=0)
    with pytest.raises(TilesrError, match="scale"):
        degrade(np.ones((8, 8)), scale=0, noise_level=5, seed=0)


@pytest.mark.parametrize("level", [0, 10, 2.5])
def test_bad_noise_level(level: float) -> None:
    with pytest.raises(TilesrError, match="noise level"):
        check_level(level)  # type: ignore[arg-type]


def _pair_with_target_background(share: float) -> ImagePair:
    model = ForwardModel(target_background=share)
    return simulate_pairs(1, size=64, noise_level=4, seed=3, model=model)[0]


def test_target_background_adds_the_inputs_light_per_area_to_the_target_only() -> None:
    plain, full, half = (_pair_with_target_background(s) for s in (0.0, 1.0, 0.5))
    np.testing.assert_array_equal(plain.lr, full.lr)
    added = full.hr.astype(np.float64) - plain.hr
    np.testing.assert_allclose(half.hr - plain.hr, added / 2, rtol=1e-4, atol=1e-3)
    # the input's 15 % of a unit filament's photons is, as light per area on the HR
    # scale, 15 % of hr_unit * hr_sigma / lr_sigma; modulated by at most +-50 %
    m = ForwardModel()
    level = m.background * m.hr_unit * m.hr_sigma / m.lr_sigma
    assert 0.5 * level <= added.min() and added.max() <= 1.5 * level
    # smooth: no structure of the density leaks into it
    assert np.abs(np.diff(added, axis=1)).max() < 0.01 * level


def test_degrade_target_keeps_its_share_of_the_uniform_background() -> None:
    flat = np.full((40, 40), 3.0, np.float32)
    pair = degrade(flat, scale=2, noise_level=5, seed=0, model=ForwardModel(target_background=1))
    # a flat image is its own 99.9th percentile: the target gains background * 3
    np.testing.assert_allclose(pair.hr, 3.0 * (1 + ForwardModel().background), rtol=1e-6)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_bad_target_background(share: float) -> None:
    with pytest.raises(TilesrError, match="target_background"):
        ForwardModel(target_background=share)
