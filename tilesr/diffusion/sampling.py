"""The one reverse-diffusion loop, and sample averaging for whole images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tilesr.denoisers.base import Denoiser
from tilesr.diffusion.noise import keyed_normal_batch
from tilesr.diffusion.samplers import Sampler

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
) -> SampleResult:
    """Restore one normalised image ``cond`` (H, W), already on the output grid.

    The samples are batch entries of one network call per step. H and W must suit the
    network (see ``denoiser.metadata.size_multiple``); the engine handles padding.
    """
    if cond.ndim != 2:
        raise ValueError(f"cond must be a 2-D image, got shape {cond.shape}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    shape = (int(cond.shape[0]), int(cond.shape[1]))
    timesteps = sampler.timesteps(steps)
    cond_batch = np.broadcast_to(cond.astype(np.float32), (n_samples, 1, *shape))

    def predict(x: NDArray[np.float32], t: int) -> NDArray[np.float32]:
        tt = np.full((n_samples,), t, dtype=np.float32)
        return denoiser.predict_noise(x[:, None], cond_batch, tt)[:, 0]

    def noise(i: int) -> NDArray[np.float32]:
        return keyed_normal_batch(sample_keys(seed, STEP_NOISE, i, plane, n_samples), (0, 0), shape)

    x_start = keyed_normal_batch(
        sample_keys(seed, INITIAL_NOISE, 0, plane, n_samples), (0, 0), shape
    )
    x0 = run_reverse(predict, x_start, sampler, timesteps, noise)
    return SampleResult(x0.mean(axis=0), x0.std(axis=0))
