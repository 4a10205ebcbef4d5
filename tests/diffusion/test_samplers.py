"""Samplers against the Gaussian case, where the exact noise predictor is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.analytic import GaussianDenoiser
from tilesr.diffusion import DDIMSampler, DDPMSampler, DPMSolverPP2MSampler, build_schedule
from tilesr.diffusion.sampling import INITIAL_NOISE, SampleNoise, sample
from tilesr.diffusion.uncertainty import predictive_std
from tilesr.errors import TilesrError
from tilesr.metadata import ScheduleSpec

MU = 0.3
STD = 0.5
SHAPE = (64, 64)  # 4096 independent pixels: mean/std estimates good to ~1-2 %


def _run(sampler, steps, n_samples=4, std=STD):
    den = GaussianDenoiser(std=std)
    cond = np.full(SHAPE, MU, dtype=np.float32)
    # n independent draws per pixel: the per-pixel samples are exact draws of the model
    result = sample(den, cond, sampler, n_samples=n_samples, steps=steps, seed=7)
    return result, den


@pytest.fixture(scope="module")
def schedule():
    return build_schedule(ScheduleSpec("linear", 1000, 1e-4, 0.02))


@pytest.mark.parametrize("form", ["eps", "x0"])
def test_ddpm_full_schedule_recovers_mean_and_variance(schedule, form):
    result, den = _run(DDPMSampler(schedule, form=form), steps=None, n_samples=8)
    assert den.calls == 1000
    assert abs(result.mean.mean() - MU) < 0.02
    # the sample std is the per-pixel std over 8 samples (ddof=0): E = STD * sqrt(7/8) approx
    pooled = np.sqrt((result.std**2).mean() * 8 / 7)
    assert pooled == pytest.approx(STD, rel=0.04)


@pytest.mark.parametrize(
    "sampler_cls,steps,tolerance",
    [(DDIMSampler, 100, 0.05), (DPMSolverPP2MSampler, 10, 0.04)],
)
def test_fast_samplers_recover_mean_and_variance(schedule, sampler_cls, steps, tolerance):
    # DDIM is first order (Euler on the probability-flow ODE): its variance error falls
    # as 1/steps; DPM-Solver++(2M) is second order and gets there in ten steps
    sampler = sampler_cls(schedule)
    result, den = _run(sampler, steps=steps, n_samples=8)
    assert den.calls == len(sampler.timesteps(steps)) <= steps
    assert abs(result.mean.mean() - MU) < 0.02
    pooled = np.sqrt((result.std**2).mean() * 8 / 7)
    assert pooled == pytest.approx(STD, rel=tolerance)


def test_ddpm_forms_agree_without_clipping(schedule):
    rng = np.random.default_rng(0)
    x, eps, noise = (rng.standard_normal((2, 8, 8)).astype(np.float32) for _ in range(3))
    a = DDPMSampler(schedule, form="eps").step(eps, 500, 499, x, noise=noise)
    b = DDPMSampler(schedule, form="x0").step(eps, 500, 499, x, noise=noise)
    np.testing.assert_allclose(a.prev_sample, b.prev_sample, atol=1e-5)


def test_dpmpp_first_step_equals_ddim(schedule):
    rng = np.random.default_rng(1)
    x, eps = (rng.standard_normal((8, 8)).astype(np.float32) for _ in range(2))
    a = DDIMSampler(schedule).step(eps, 900, 700, x)
    b = DPMSolverPP2MSampler(schedule).step(eps, 900, 700, x)
    np.testing.assert_allclose(a.prev_sample, b.prev_sample, atol=1e-5)


def test_fast_sampler_with_too_few_steps_is_biased(schedule):
    # guards against a test that cannot fail: one DDIM step collapses the variance
    result, _ = _run(DDIMSampler(schedule), steps=1, n_samples=8)
    pooled = np.sqrt((result.std**2).mean() * 8 / 7)
    assert pooled < 0.5 * STD


def test_samplers_are_stateless(schedule):
    sampler = DPMSolverPP2MSampler(schedule)
    rng = np.random.default_rng(2)
    x, eps = (rng.standard_normal((4, 4)).astype(np.float32) for _ in range(2))
    first = sampler.step(eps, 800, 600, x)
    sampler.step(eps * 2, 600, 400, x, history=first.history)
    again = sampler.step(eps, 800, 600, x)
    np.testing.assert_array_equal(first.prev_sample, again.prev_sample)


@pytest.mark.parametrize("spacing", ["linspace", "logsnr"])
@pytest.mark.parametrize("steps", [1, 3, 10, 57, 999, 1000, None])
def test_spacing_gives_unique_descending_timesteps(schedule, spacing, steps):
    ts = DDIMSampler(schedule, spacing=spacing).timesteps(steps)
    assert ts[0] == 999
    assert all(a > b >= 0 for a, b in itertools.pairwise(ts))
    assert len(ts) <= (steps or 1000)


@pytest.mark.parametrize("spacing", ["linspace", "logsnr"])
def test_start_limits_the_timesteps(schedule, spacing):
    ts = DDIMSampler(schedule, spacing=spacing).timesteps(10, start=600)
    assert ts[0] == 600
    assert all(a > b >= 0 for a, b in itertools.pairwise(ts))
    assert 1 < len(ts) <= 10


def test_start_outside_the_schedule_is_refused(schedule):
    with pytest.raises(TilesrError, match="start timestep"):
        DDIMSampler(schedule).timesteps(10, start=1000)


def test_strength_trades_sample_spread_for_fidelity_to_the_conditioning(schedule):
    # starting from the noised conditioning (SDEdit) keeps the samples near it
    den = GaussianDenoiser(std=STD)
    cond = np.full(SHAPE, MU, dtype=np.float32)
    spread = {}
    for strength in (0.05, 0.3, 1.0):
        res = sample(
            den,
            cond,
            DPMSolverPP2MSampler(schedule),
            n_samples=4,
            steps=10,
            seed=3,
            strength=strength,
        )
        spread[strength] = float(np.sqrt((res.std**2).mean()))
        assert abs(res.mean.mean() - MU) < 0.02
    assert spread[0.05] < spread[0.3] < spread[1.0]
    assert spread[0.05] < 0.5 * spread[1.0]


def test_strength_must_be_in_the_unit_interval(schedule):
    den = GaussianDenoiser(std=STD)
    with pytest.raises(TilesrError, match="strength"):
        sample(den, np.zeros((8, 8), np.float32), DDIMSampler(schedule), steps=2, strength=0.0)


def test_antithetic_noise_pairs_negate_and_keep_the_independent_keys():
    window = ((5, -7), (6, 9))
    independent = SampleNoise(seed=4, plane=2).draw(INITIAL_NOISE, 0, 3, *window)
    paired = SampleNoise(seed=4, plane=2, antithetic=True).draw(INITIAL_NOISE, 0, 5, *window)
    assert paired.shape == (5, 6, 9) and paired.dtype == np.float32
    # sample 2k is independent sample k; sample 2k + 1 its negation; an odd one stays alone
    np.testing.assert_array_equal(paired[0::2], independent)
    np.testing.assert_array_equal(paired[1::2], -independent[:2])


@pytest.mark.parametrize("sampler_cls", [DDIMSampler, DDPMSampler])
def test_antithetic_pairs_cancel_the_sampling_variance_of_a_linear_sampler(schedule, sampler_cls):
    # for Gaussian data the exact predictor is linear in x_t, so a sampler's output is
    # linear in its noise: the mean of an antithetic pair is the posterior mean exactly,
    # while each sample is still a draw like an independent one (std 0.15: x0 clipping
    # never acts)
    std, steps = 0.15, 20
    den = GaussianDenoiser(std=std)
    cond = np.full(SHAPE, MU, dtype=np.float32)
    runs = {
        a: sample(den, cond, sampler_cls(schedule), n_samples=2, steps=steps, seed=1, antithetic=a)
        for a in (False, True)
    }
    np.testing.assert_allclose(runs[True].mean, MU, atol=1e-4)
    assert np.abs(runs[False].mean - MU).mean() > 0.03  # independent: about std / sqrt(2)
    # each sample's spread: about the exact mean (ddof 0) for a pair, ddof 1 for draws
    var = {a: predictive_std(r.samples, antithetic=a) ** 2 for a, r in runs.items()}
    spread = {True: np.sqrt(var[True].mean()), False: np.sqrt(var[False].mean() * 2 / 3)}
    assert spread[True] == pytest.approx(spread[False], rel=0.05)
