"""The three prediction types (epsilon, x0, v): conversions, and every sampler reading them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.analytic import GaussianDenoiser
from tilesr.diffusion import build_schedule, make_sampler
from tilesr.diffusion.parameterization import (
    PREDICTIONS,
    output_for_x0,
    split_output,
    training_target,
)
from tilesr.diffusion.sampling import sample
from tilesr.metadata import ModelMetadata, ScheduleSpec

SPEC = ScheduleSpec("linear", 1000, 1e-4, 0.02)


@pytest.fixture(scope="module")
def schedule():
    return build_schedule(SPEC)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("abar", [0.9999, 0.5, 4e-5])
def test_training_target_is_read_back_as_the_clean_image_and_noise(prediction, abar):
    rng = np.random.default_rng(0)
    x0, eps = rng.uniform(-1, 1, (8, 8)), rng.standard_normal((8, 8))
    a, s = np.sqrt(abar), np.sqrt(1 - abar)
    x_t = a * x0 + s * eps
    out = training_target(x0, eps, a, s, prediction)
    got_x0, got_eps = split_output(out, x_t, abar, prediction)
    # epsilon reads x0 through 1/sqrt(abar): ~160x amplification at abar 4e-5
    tol = 1e-9 / np.sqrt(abar)
    np.testing.assert_allclose(got_x0, x0, atol=tol)
    np.testing.assert_allclose(got_eps, eps, atol=1e-9 / np.sqrt(1 - abar))
    np.testing.assert_allclose(output_for_x0(x0, x_t, abar, prediction), out, atol=1e-9)


class OracleDenoiser:
    """Knows the clean image: returns the exact epsilon / x0 / v for any x_t."""

    def __init__(self, image, prediction):
        self.image = image
        self.schedule = build_schedule(SPEC)
        self.metadata = ModelMetadata(
            schedule=SPEC,
            prediction=prediction,
            scale=1,
            size_multiple=1,
            tile_size=32,
            overlap=8,
        )

    def predict(self, noisy, cond, t):
        out = np.empty_like(noisy)
        for i, ti in enumerate(np.asarray(t).astype(int)):
            abar = self.schedule.alpha_bar(int(ti))
            out[i, 0] = output_for_x0(self.image, noisy[i, 0], abar, self.metadata.prediction)
        return out.astype(np.float32)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpmpp"])
@pytest.mark.parametrize("steps", [1, 5, 50])
def test_an_exact_prediction_reconstructs_the_image_through_every_sampler(
    schedule, prediction, name, steps
):
    rng = np.random.default_rng(1)
    image = rng.uniform(-0.9, 0.9, (16, 24)).astype(np.float32)
    den = OracleDenoiser(image, prediction)
    sampler = make_sampler(name, schedule, prediction=prediction)
    result = sample(den, np.zeros_like(image), sampler, n_samples=2, steps=steps, strength=1.0)
    # the epsilon oracle is read through 1/sqrt(abar) in float32 at t = T-1
    tol = 2e-3 if prediction == "epsilon" else 1e-5
    np.testing.assert_allclose(result.samples, np.broadcast_to(image, (2, 16, 24)), atol=tol)


class GaussianPrediction(GaussianDenoiser):
    """The Gaussian case's optimal predictor, answered as x0 or v instead of epsilon."""

    def __init__(self, prediction, std=0.5):
        super().__init__(std=std)
        self.metadata = ModelMetadata(
            schedule=SPEC, prediction=prediction, scale=1, size_multiple=1
        )

    def predict(self, noisy, cond, t):
        eps = super().predict(noisy, cond, t)
        abar = build_schedule(SPEC).alphas_cumprod[np.asarray(t).astype(int)].reshape(-1, 1, 1, 1)
        x0 = (noisy - np.sqrt(1 - abar) * eps) / np.sqrt(abar)
        if self.metadata.prediction == "x0":
            return x0.astype(np.float32)
        return (np.sqrt(abar) * eps - np.sqrt(1 - abar) * x0).astype(np.float32)


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_x0_and_v_models_sample_the_right_distribution(schedule, prediction):
    den = GaussianPrediction(prediction)
    cond = np.full((64, 64), 0.3, dtype=np.float32)
    sampler = make_sampler("dpmpp", schedule, prediction=prediction, clip_x0=None)
    result = sample(den, cond, sampler, n_samples=8, steps=10, seed=7, strength=1.0)
    assert abs(result.mean.mean() - 0.3) < 0.02
    pooled = np.sqrt((result.std**2).mean() * 8 / 7)
    assert pooled == pytest.approx(0.5, rel=0.04)


def test_a_sampler_reading_another_prediction_is_refused(schedule):
    den = GaussianPrediction("v")
    with pytest.raises(ValueError, match="reads 'epsilon' outputs but the model predicts 'v'"):
        sample(den, np.zeros((8, 8), np.float32), make_sampler("ddim", schedule), steps=2)


def test_sample_returns_the_individual_samples(schedule):
    den = GaussianDenoiser()
    result = sample(
        den, np.zeros((8, 8), np.float32), make_sampler("ddpm", schedule), n_samples=3, steps=4
    )
    assert result.samples.shape == (3, 8, 8)
    np.testing.assert_array_equal(result.mean, result.samples.mean(axis=0))
