"""The one reverse-diffusion loop, and sample averaging for whole images."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tilesr.denoisers.base import Denoiser
from tilesr.diffusion.noise import keyed_normal_batch
from tilesr.diffusion.samplers import Sampler
from tilesr.diffusion.schedule import NoiseSchedule
from tilesr.errors import TilesrError

# Streams separate the initial noise from the per-step noise in the key space.
INITIAL_NOISE = 0
STEP_NOISE = 1

NoisePredictor = Callable[[NDArray[np.float32], int], NDArray[np.float32]]
StepNoise = Callable[[int], NDArray[np.float32]]


@dataclass(frozen=True)
class SampleResult:
    """Mean and per-pixel standard deviation over samples (std is zero for one sample)."""

    mean: NDArray[np.float32]
    std: NDArray[np.float32]


def run_reverse(
    predict_eps: NoisePredictor,
    x_start: NDArray[np.float32],
    sampler: Sampler,
    timesteps: list[int],
    step_noise: StepNoise | None = None,
    *,
    on_step: Callable[[], None] | None = None,
) -> NDArray[np.float32]:
    """Run ``sampler`` from ``x_start`` at ``timesteps[0]`` down to the clean image.

    ``predict_eps(x_t, t)`` returns the noise prediction for the whole of ``x_t``;
    ``step_noise(i)`` returns the Gaussian noise for step ``i`` (stochastic samplers).
    """
    x = x_start
    history = None
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        eps = predict_eps(x, t)
        noise = None
        if sampler.stochastic and t_prev >= 0:
            if step_noise is None:
                raise ValueError(f"{type(sampler).__name__} is stochastic and needs step_noise")
            noise = step_noise(i)
        out = sampler.step(eps, t, t_prev, x, noise=noise, history=history)
        x, history = out.prev_sample, out.history
        if on_step is not None:
            on_step()
    return x


def start_timestep(num_timesteps: int, strength: float) -> int:
    """The first timestep for a sampling ``strength`` in (0, 1] (1: the whole schedule)."""
    if not 0.0 < strength <= 1.0:
        raise TilesrError(f"strength must be in (0, 1], got {strength}")
    return max(0, round(strength * (num_timesteps - 1)))


def initial_state(
    schedule: NoiseSchedule, t_start: int, cond: NDArray[np.float32], noise: NDArray[np.float32]
) -> NDArray[np.float32]:
    """x at ``t_start`` drawn from q(x_t | x_0 = cond) (eq. 4 of DDPM).

    At t = T-1 this is pure noise up to sqrt(abar_T) ~ 0.01 of cond. Starting lower
    (SDEdit, Meng et al. 2022) keeps the conditioning's low frequencies, which an
    epsilon-predicting network reconstructs poorly at high noise: x0 = (x_t - sqrt(1 -
    abar) eps) / sqrt(abar) amplifies its error by 1 / sqrt(abar), ~100 at t = T-1.
    """
    abar = schedule.alpha_bar(t_start)
    return (math.sqrt(abar) * cond + math.sqrt(1.0 - abar) * noise).astype(np.float32)


def sample_keys(seed: int, stream: int, step: int, plane: int, n_samples: int) -> list[list[int]]:
    """Noise keys, one per sample, shared by the whole-image loop and the tiled engine."""
    return [[seed, stream, step, plane, s] for s in range(n_samples)]


def sample(
    denoiser: Denoiser,
    cond: NDArray[np.float32],
    sampler: Sampler,
    *,
    n_samples: int = 1,
    steps: int | None = None,
    seed: int = 0,
    plane: int = 0,
    strength: float | None = None,
) -> SampleResult:
    """Restore one normalised image ``cond`` (H, W), already on the output grid.

    The samples are batch entries of one network call per step. H and W must suit the
    network (see ``denoiser.metadata.size_multiple``); the engine handles padding.
    ``strength`` (default: the model's) sets the first timestep, see :func:`initial_state`.
    """
    if cond.ndim != 2:
        raise ValueError(f"cond must be a 2-D image, got shape {cond.shape}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    shape = (int(cond.shape[0]), int(cond.shape[1]))
    if strength is None:
        strength = denoiser.metadata.strength
    t_start = start_timestep(sampler.schedule.num_timesteps, strength)
    timesteps = sampler.timesteps(steps, t_start)
    cond_batch = np.broadcast_to(cond.astype(np.float32), (n_samples, 1, *shape))

    def predict(x: NDArray[np.float32], t: int) -> NDArray[np.float32]:
        tt = np.full((n_samples,), t, dtype=np.float32)
        return denoiser.predict_noise(x[:, None], cond_batch, tt)[:, 0]

    def noise(i: int) -> NDArray[np.float32]:
        return keyed_normal_batch(sample_keys(seed, STEP_NOISE, i, plane, n_samples), (0, 0), shape)

    keys = sample_keys(seed, INITIAL_NOISE, 0, plane, n_samples)
    noise0 = keyed_normal_batch(keys, (0, 0), shape)
    x_start = initial_state(sampler.schedule, t_start, cond, noise0)
    x0 = run_reverse(predict, x_start, sampler, timesteps, noise)
    return SampleResult(x0.mean(axis=0), x0.std(axis=0))
