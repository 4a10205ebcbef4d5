"""Noise schedules as plain float64 arrays, cast only where they are used."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tilesr.metadata import ScheduleSpec


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), t = 0..T-1."""

    betas: NDArray[np.float64]
    alphas_cumprod: NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size < 2 or not np.all((betas > 0) & (betas < 1)):
            raise ValueError("betas must be a 1-D array of values in (0, 1)")
        betas.setflags(write=False)
        object.__setattr__(self, "betas", betas)
        alphas_cumprod = np.cumprod(1.0 - betas)
        alphas_cumprod.setflags(write=False)
        object.__setattr__(self, "alphas_cumprod", alphas_cumprod)

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.size)

    def alpha_bar(self, t: int) -> float:
        """abar_t, with the convention abar_{-1} = 1 (the clean image)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def add_noise(self, x0: NDArray, noise: NDArray, t: int | NDArray[np.integer]) -> NDArray:
        """Sample x_t from q(x_t | x_0) (eq. 4 of DDPM), the one place tilesr does.

        ``t`` is one timestep for the whole array, or one per batch item (first axis);
        the result has the data's dtype.
        """
        if np.ndim(t) == 0:
            abar = self.alpha_bar(int(t))
            return (math.sqrt(abar) * x0 + math.sqrt(1.0 - abar) * noise).astype(x0.dtype)
        abar_t = self.alphas_cumprod[np.asarray(t)].reshape((-1,) + (1,) * (x0.ndim - 1))
        return (np.sqrt(abar_t) * x0 + np.sqrt(1.0 - abar_t) * noise).astype(x0.dtype)


def linear_schedule(timesteps: int, beta_start: float, beta_end: float) -> NoiseSchedule:
    """Linear betas (DDPM, Ho et al. 2020)."""
    return NoiseSchedule(np.linspace(beta_start, beta_end, timesteps, dtype=np.float64))


def cosine_schedule(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """Cosine abar (eq. 17 of Nichol & Dhariwal 2021), betas clipped at max_beta."""
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1.0 - f[1:] / f[:-1]
    return NoiseSchedule(np.clip(betas, 1e-8, max_beta))


def build_schedule(spec: ScheduleSpec) -> NoiseSchedule:
    if spec.kind == "linear":
        return linear_schedule(spec.timesteps, spec.beta_start, spec.beta_end)
    return cosine_schedule(spec.timesteps)
