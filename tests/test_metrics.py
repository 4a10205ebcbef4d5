from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from tilesr.errors import TilesrError
from tilesr.metrics import (
    ImageMetrics,
    fit_scale_offset,
    image_metrics,
    ms_ssim,
    ms_ssim_scales,
    normalize_pair,
)


def _structure(size: int, seed: int = 0) -> np.ndarray:
    """Smooth random blobs in [0, 1]: a stand-in for a fluorescence image."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((size, size)), 3.0)
    img -= img.min()
    return img / img.max()


def test_one_scale_ms_ssim_is_skimage_ssim() -> None:
    gt = _structure(64)
    pred = gt + np.random.default_rng(1).normal(0, 0.1, gt.shape)
    reference = structural_similarity(
        pred, gt, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ms_ssim(pred, gt, data_range=1.0, scales=1) == pytest.approx(reference, abs=1e-9)


def test_identical_images_are_perfect() -> None:
    gt = _structure(48)
    m = image_metrics(gt, gt)
    assert m.ssim == pytest.approx(1.0)
    assert m.ms_ssim == pytest.approx(1.0)
    assert math.isinf(m.psnr) and m.psnr > 0
    assert m.mae == 0.0
    assert m.nrmse == 0.0


def test_noisier_images_score_worse_on_every_metric() -> None:
    gt = _structure(180)  # five MS-SSIM scales
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 1, gt.shape)
    low = image_metrics(gt + 0.05 * noise, gt, data_range=1.0)
    high = image_metrics(gt + 0.2 * noise, gt, data_range=1.0)
    assert high.ssim < low.ssim < 1
    assert high.ms_ssim < low.ms_ssim < 1
    assert high.psnr < low.psnr
    assert high.mae > low.mae > 0
    assert high.nrmse > low.nrmse > 0


def test_psnr_matches_its_definition() -> None:
    gt = _structure(32)
    pred = gt + 0.1
    m = image_metrics(pred, gt, data_range=2.0)
    assert m.psnr == pytest.approx(10 * math.log10(4.0 / 0.01))
    assert m.mae == pytest.approx(0.1)


def test_scale_count_follows_image_size() -> None:
    assert ms_ssim_scales((176, 300)) == 5
    assert ms_ssim_scales((175, 175)) == 4
    assert ms_ssim_scales((88, 88)) == 4
    assert ms_ssim_scales((21, 64)) == 1
    with pytest.raises(TilesrError, match="10"):
        ms_ssim_scales((10, 64))


def test_planes_are_averaged() -> None:
    gt = np.stack([_structure(32, 0), _structure(32, 1)])
    pred = gt.copy()
    pred[1] += 0.1
    both = image_metrics(pred, gt, data_range=1.0)
    first = image_metrics(pred[0], gt[0], data_range=1.0)
    second = image_metrics(pred[1], gt[1], data_range=1.0)
    assert both.ssim == pytest.approx((first.ssim + second.ssim) / 2)
    assert both.mae == pytest.approx((first.mae + second.mae) / 2)


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(TilesrError, match=r"\(32, 32\).*\(32, 30\)"):
        image_metrics(np.zeros((32, 32)), np.zeros((32, 30)))


def test_as_dict_has_all_fields() -> None:
    m = ImageMetrics(ssim=0.5, ms_ssim=0.6, psnr=20.0, mae=0.1, nrmse=0.2)
    assert m.as_dict() == {"ssim": 0.5, "ms_ssim": 0.6, "psnr": 20.0, "mae": 0.1, "nrmse": 0.2}


def test_match_normalisation_ignores_brightness_and_contrast() -> None:
    gt = 1000 * _structure(40) + 50
    pred = 0.01 * gt - 3  # same image, other intensity scale
    pair = normalize_pair(pred, gt, mode="match")
    np.testing.assert_allclose(pair.pred, pair.gt, atol=1e-9)
    assert pair.data_range == 1.0
    m = image_metrics(pair.pred, pair.gt, data_range=pair.data_range)
    assert m.ssim == pytest.approx(1.0)


def test_least_squares_fit_is_optimal() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.random(200), rng.random(200)
    fitted = fit_scale_offset(x, y)
    best = np.sum((fitted - y) ** 2)
    for da, db in [(0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)]:
        assert best < np.sum((fitted * (1 + da) + db - y) ** 2)


def test_percentile_mode_maps_percentiles_to_unit_range() -> None:
    gt = _structure(40)
    pair = normalize_pair(3 * gt, gt, mode="percentile", low=0, high=100)
    assert pair.gt.min() == pytest.approx(0) and pair.gt.max() == pytest.approx(1)
    np.testing.assert_allclose(pair.pred, pair.gt, atol=1e-12)


def test_unknown_normalisation_is_named() -> None:
    with pytest.raises(TilesrError, match="'zscore'"):
        normalize_pair(np.zeros((16, 16)), np.zeros((16, 16)), mode="zscore")


@pytest.mark.parametrize("mode", ["match", "percentile", "none"])
def test_normalize_pair_says_the_factor_it_put_the_prediction_on(mode):
    # what puts the prediction's uncertainty on the compared scale (tilesr evaluate)
    rng = np.random.default_rng(4)
    gt = rng.random((40, 40)) * 500
    pred = 0.25 * gt + rng.normal(size=gt.shape) + 7
    pair = normalize_pair(pred, gt, mode=mode)
    moved = pair.pred_scale * (pred - pred.mean())
    np.testing.assert_allclose(pair.pred - pair.pred.mean(), moved, atol=1e-12)
