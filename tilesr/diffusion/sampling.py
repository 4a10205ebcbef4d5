"""The one reverse-diffusion loop, and sample averaging for whole images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tilesr.denoisers.base import Denoiser
from tilesr.diffusion.noise import keyed_normal_batch
from tilesr.diffusion.samplers import Sampler, StepOutput
from tilesr.diffusion.schedule import NoiseSchedule
from tilesr.errors import TilesrError

# Streams separate the initial noise from the per-step noise in the key space.
INITIAL_NOISE = 0
STEP_NOISE = 1

#: ``predict(x_t, t)``: the network output (as the model's ``prediction`` says) for all of x_t
NetworkPredictor = Callable[[NDArray[np.float32], int], NDArray[np.float32]]
StepNoise = Callable[[int], NDArray[np.float32]]
StepObserver = Callable[[int, StepOutput], None]


@dataclass(frozen=True)
class SampleResult:
    """The individual samples ``(n, H, W)``, their mean and per-pixel standard deviation."""

    samples: NDArray[np.float32]

    @property
    def mean(self) -> NDArray[np.float32]:
        return self.samples.mean(axis=0)

    @property
    def std(self) -> NDArray[np.float32]:
        """Population std over the samples (zero for one sample)."""
        return self.samples.std(axis=0)


def run_reverse(
    predict: NetworkPredictor,
    x_start: NDArray[np.float32],
    sampler: Sampler,
    timesteps: list[int],
    step_noise: StepNoise | None = None,
    *,
    on_step: StepObserver | None = None,
) -> NDArray[np.float32]:
    """Run ``sampler`` from ``x_start`` at ``timesteps[0]`` down to the clean image.

    ``predict(x_t, t)`` returns the network output for the whole of ``x_t``;
    ``step_noise(i)`` returns the Gaussian noise for step ``i`` (stochastic samplers);
    ``on_step(i, output)`` sees every step's result (e.g. its clean-image estimate).
    """
    x = x_start
    history = None
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        output = predict(x, t)
        noise = None
        if sampler.stochastic and t_prev >= 0:
            if step_noise is None:
                raise ValueError(f"{type(sampler).__name__} is stochastic and needs step_noise")
            noise = step_noise(i)
        out = sampler.step(output, t, t_prev, x, noise=noise, history=history)
        x, history = out.prev_sample, out.history
        if on_step is not None:
            on_step(i, out)
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
    return schedule.add_noise(cond, noise, t_start).astype(np.float32)


@dataclass(frozen=True)
class SampleNoise:
    """The noise of every sample of one plane, shared by the whole-image loop and the engine.

    A pixel's noise is keyed by (seed, stream, step, plane, sample) and its global
    coordinates. ``antithetic``: samples come in pairs, sample 2k + 1 drawing the negated
    noise of sample 2k (sample 2k's key is that of independent sample k; an odd count
    leaves the last sample unpaired). A few-step deterministic sampler maps the initial
    noise to an image almost linearly, so the mean of a pair cancels most of the sampling
    variance that the mean of two independent draws only halves (tools/bench_care.py
    measures it).
    """

    seed: int = 0
    plane: int = 0
    antithetic: bool = False

    def draw(
        self,
        stream: int,
        step: int,
        n_samples: int,
        origin: tuple[int, int],
        shape: tuple[int, int],
    ) -> NDArray[np.float32]:
        """Noise (n_samples, H, W) of ``stream`` at ``step`` for the window at ``origin``."""
        drawn = -(-n_samples // 2) if self.antithetic else n_samples
        keys = [[self.seed, stream, step, self.plane, s] for s in range(drawn)]
        noise = keyed_normal_batch(keys, origin, shape)
        if not self.antithetic:
            return noise
        paired = np.repeat(noise, 2, axis=0)[:n_samples]
        np.negative(paired[1::2], out=paired[1::2])
        return paired


def sample(
    denoiser: Denoiser,
    cond: NDArray[np.float32],
    sampler: Sampler,
    *,
    n_samples: int = 1,
    steps: int | None = None,
    seed: int = 0,
    plane: int = 0,
    antithetic: bool = False,
    strength: float | None = None,
    on_step: StepObserver | None = None,
) -> SampleResult:
    """Restore one normalised image ``cond`` (H, W), already on the output grid.

    The samples are batch entries of one network call per step. H and W must suit the
    network (see ``denoiser.metadata.size_multiple``); the engine handles padding.
    ``strength`` (default: the model's) sets the first timestep, see :func:`initial_state`;
    ``antithetic`` pairs the samples' noise (:class:`SampleNoise`).
    The sampler must read the network output as the model's metadata says (its
    ``prediction``).
    """
    if cond.ndim != 2:
        raise ValueError(f"cond must be a 2-D image, got shape {cond.shape}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    check_sampler_fits(sampler, denoiser.metadata.prediction)
    shape = (int(cond.shape[0]), int(cond.shape[1]))
    if strength is None:
        strength = denoiser.metadata.strength
    t_start = start_timestep(sampler.schedule.num_timesteps, strength)
    timesteps = sampler.timesteps(steps, t_start)
    cond_batch = np.broadcast_to(cond.astype(np.float32), (n_samples, 1, *shape))

    def predict(x: NDArray[np.float32], t: int) -> NDArray[np.float32]:
        tt = np.full((n_samples,), t, dtype=np.float32)
        return denoiser.predict(x[:, None], cond_batch, tt)[:, 0]

    keyed = SampleNoise(seed, plane, antithetic)

    def noise(i: int) -> NDArray[np.float32]:
        return keyed.draw(STEP_NOISE, i, n_samples, (0, 0), shape)

    noise0 = keyed.draw(INITIAL_NOISE, 0, n_samples, (0, 0), shape)
    x_start = initial_state(sampler.schedule, t_start, cond, noise0)
    x0 = run_reverse(predict, x_start, sampler, timesteps, noise, on_step=on_step)
    return SampleResult(x0)


def check_sampler_fits(sampler: Sampler, prediction: str) -> None:
    """Refuse a sampler that would read the network's output as something else."""
    reads = getattr(sampler, "prediction", "epsilon")
    if reads != prediction:
        raise ValueError(
            f"the sampler reads {reads!r} outputs but the model predicts {prediction!r}; "
            "build it with make_sampler(..., prediction=metadata.prediction)"
        )
