"""Stacks: shared vs independent plane noise; the uncertainty follows the model's calibration."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.onnx_models import analytic_model
from tests.onnx_models import test_metadata as small_metadata
from tilesr.engine import restore
from tilesr.errors import TilesrError
from tilesr.options import RestoreOptions


@pytest.fixture(scope="module")
def plane():
    rng = np.random.default_rng(2)
    return (500 + 100 * rng.standard_normal((40, 52))).astype(np.float32)


def _restore(model, image, **options):
    result = restore(image, model, RestoreOptions(steps=3, sampler="ddpm", **options))
    out = [result.image.compute()]
    if result.uncertainty is not None:
        out.append(result.uncertainty.compute())
    return out


def test_shared_plane_noise_makes_identical_planes_identical(models, plane):
    stack = np.stack([plane] * 3)
    (independent,) = _restore(models["analytic1"], stack, axes="zyx", samples=1)  # the default
    (shared,) = _restore(models["analytic1"], stack, axes="zyx", samples=1, plane_noise="shared")
    assert not np.array_equal(independent[0], independent[1])  # the flicker
    assert np.array_equal(shared[0], shared[1]) and np.array_equal(shared[1], shared[2])
    # plane 0 is the same restoration either way
    assert np.array_equal(shared[0], independent[0])


def test_unknown_plane_noise_is_refused():
    with pytest.raises(TilesrError, match="plane noise must be one of independent, shared"):
        RestoreOptions(plane_noise="random")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    meta = replace(small_metadata(), uncertainty_scale=2.0, uncertainty_pool=1.5)
    return analytic_model(tmp_path_factory.mktemp("cal") / "cal.onnx", metadata=meta)


def test_uncertainty_uses_the_models_scale_and_pooling(models, calibrated, plane):
    _, plain = _restore(models["analytic1"], plane, samples=4)
    mean_c, cal = _restore(calibrated, plane, samples=4)
    mean_p, _ = _restore(models["analytic1"], plane, samples=4)
    assert np.array_equal(mean_c, mean_p)  # calibration never touches the restoration
    # pooled: smoother than the per-pixel estimate, about twice its level
    assert np.std(np.diff(cal, axis=1)) < 0.5 * np.std(np.diff(2 * plain, axis=1))
    assert np.median(cal) == pytest.approx(2 * np.median(plain), rel=0.15)
