"""Reverse-diffusion samplers.

A sampler never calls the network and keeps no mutable state: the caller passes the
network's output (noise, clean image or velocity, as the sampler's ``prediction`` says;
see :mod:`tilesr.diffusion.parameterization`), the two timesteps, the current sample,
fresh Gaussian noise (for stochastic samplers) and the history returned by the previous
step. One sampler object therefore serves any number of tiles and workers at once.

Timesteps index the training schedule (0..T-1); ``t_prev = -1`` is the clean image
(abar = 1). Stepping between non-adjacent timesteps uses the respacing rule of
Nichol & Dhariwal (2021): the effective beta is 1 - abar_t / abar_prev.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tilesr.diffusion.parameterization import check_prediction, split_output
from tilesr.diffusion.schedule import NoiseSchedule
from tilesr.errors import TilesrError
from tilesr.metadata import SAMPLERS

SAMPLER_NAMES = SAMPLERS  # one list, declared with the model metadata


@dataclass(frozen=True)
class StepOutput:
    prev_sample: NDArray[np.float32]
    pred_x0: NDArray[np.float32]
    history: Any = None


class Sampler(Protocol):
    @property
    def schedule(self) -> NoiseSchedule: ...

    @property
    def stochastic(self) -> bool:
        """Whether :meth:`step` needs fresh Gaussian noise."""
        ...

    def timesteps(self, steps: int | None, start: int | None = None) -> list[int]:
        """The descending timesteps visited with ``steps`` network evaluations (None: all),
        starting at ``start`` (default T-1)."""
        ...

    def step(
        self,
        output: NDArray[np.float32],
        t: int,
        t_prev: int,
        x_t: NDArray[np.float32],
        *,
        noise: NDArray[np.float32] | None = None,
        history: Any = None,
    ) -> StepOutput: ...


def spaced_timesteps(
    schedule: NoiseSchedule, steps: int | None, spacing: str = "linspace", start: int | None = None
) -> list[int]:
    """Descending timesteps for ``steps`` network evaluations (all T of them when None).

    ``linspace``: steps + 1 points evenly spaced from T-1 to 0, dropping the last, so the
    final update jumps from about T/steps straight to the clean image (diffusers'
    "linspace"). ``logsnr``: evenly spaced in the half log-SNR lambda from T-1 down to
    t = 0, the spacing DPM-Solver recommends for pixel-space models (sec. 3.3 of
    DPM-Solver); with few steps it keeps the last jump to the clean image tiny.
    ``start`` (default T-1) is the first timestep: sampling from a partly noised
    conditioning image (SDEdit) visits only timesteps up to it.
    """
    top = schedule.num_timesteps - 1 if start is None else int(start)
    if not 0 <= top < schedule.num_timesteps:
        raise TilesrError(f"start timestep must be in [0, {schedule.num_timesteps - 1}], got {top}")
    num_timesteps = top + 1
    if steps is None or steps >= num_timesteps:
        return list(range(num_timesteps - 1, -1, -1))
    if steps < 1:
        raise TilesrError(f"number of sampling steps must be at least 1, got {steps}")
    if spacing == "linspace":
        ts = np.round(np.linspace(num_timesteps - 1, 0, steps + 1)[:-1]).astype(int)
    elif spacing == "logsnr":
        abar = schedule.alphas_cumprod[:num_timesteps]
        lam = 0.5 * (np.log(abar) - np.log1p(-abar))  # decreasing in t
        targets = np.linspace(lam[-1], lam[0], steps)
        ts = np.clip(np.searchsorted(-lam, -targets), 0, num_timesteps - 1)
        ts[0] = num_timesteps - 1
    else:
        raise TilesrError(f"timestep spacing must be 'linspace' or 'logsnr', got {spacing!r}")
    # strictly descending and unique, whatever rounding did
    return sorted({int(t) for t in ts}, reverse=True)


def _estimates(
    output: NDArray, x_t: NDArray, abar: float, prediction: str, clip_x0: float | None
) -> tuple[NDArray, NDArray]:
    """(x0, eps) from the network output; a clipped x0 comes with the eps consistent with it
    (as DDIM's reference code does), so x_t = sqrt(abar) x0 + sqrt(1 - abar) eps holds."""
    x0, eps = split_output(output, x_t, abar, prediction)
    if clip_x0 is None:
        return x0, eps
    clipped = np.clip(x0, -clip_x0, clip_x0)
    return clipped, (x_t - math.sqrt(abar) * clipped) / math.sqrt(1.0 - abar)


@dataclass(frozen=True)
class DDPMSampler:
    """Ancestral sampling with the posterior variance beta-tilde (DDPM, Ho et al. 2020).

    ``form="eps"`` is eq. 11 of DDPM (the tutorial's eq. 11); ``form="x0"`` goes
    through the predicted clean image and the posterior mean q(x_{t-1} | x_t, x_0)
    (eq. 6-7 of DDPM, the tutorial's Appendix B), which allows clipping x_0.
    Without clipping the two forms are algebraically identical.
    """

    schedule: NoiseSchedule
    form: str = "eps"
    clip_x0: float | None = None
    spacing: str = "linspace"
    prediction: str = "epsilon"

    def __post_init__(self) -> None:
        if self.form not in ("eps", "x0"):
            raise TilesrError(f"DDPM form must be 'eps' or 'x0', got {self.form!r}")
        check_prediction(self.prediction)

    @property
    def stochastic(self) -> bool:
        return True

    def timesteps(self, steps: int | None, start: int | None = None) -> list[int]:
        return spaced_timesteps(self.schedule, steps, self.spacing, start)

    def step(self, output, t, t_prev, x_t, *, noise=None, history=None) -> StepOutput:
        abar_t = self.schedule.alpha_bar(t)
        abar_prev = self.schedule.alpha_bar(t_prev)
        alpha = abar_t / abar_prev  # respaced 1 - beta_t
        beta = 1.0 - alpha
        pred_x0, _ = _estimates(output, x_t, abar_t, self.prediction, self.clip_x0)
        if self.form == "eps":
            eps = split_output(output, x_t, abar_t, self.prediction)[1]  # unclipped
            # eq. 11 of DDPM: mu = (x_t - beta / sqrt(1 - abar_t) * eps) / sqrt(alpha_t)
            mean = (x_t - beta / math.sqrt(1.0 - abar_t) * eps) / math.sqrt(alpha)
        else:
            # eq. 7 of DDPM: posterior mean from x_0 and x_t
            mean = (math.sqrt(abar_prev) * beta / (1.0 - abar_t)) * pred_x0 + (
                math.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar_t)
            ) * x_t
        variance = beta * (1.0 - abar_prev) / (1.0 - abar_t)  # beta-tilde, eq. 7 of DDPM
        if t_prev >= 0 and variance > 0:
            if noise is None:
                raise ValueError("DDPM needs noise for every step but the last")
            mean = mean + math.sqrt(variance) * noise
        return StepOutput(
            mean.astype(np.float32, copy=False), pred_x0.astype(np.float32, copy=False)
        )


@dataclass(frozen=True)
class DDIMSampler:
    """DDIM (Song et al. 2021); eta=0 is deterministic, eta=1 matches DDPM's variance."""

    schedule: NoiseSchedule
    eta: float = 0.0
    clip_x0: float | None = None
    spacing: str = "logsnr"
    prediction: str = "epsilon"

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0:
            raise TilesrError(f"DDIM eta must be in [0, 1], got {self.eta}")
        check_prediction(self.prediction)

    @property
    def stochastic(self) -> bool:
        return self.eta > 0

    def timesteps(self, steps: int | None, start: int | None = None) -> list[int]:
        return spaced_timesteps(self.schedule, steps, self.spacing, start)

    def step(self, output, t, t_prev, x_t, *, noise=None, history=None) -> StepOutput:
        abar_t = self.schedule.alpha_bar(t)
        abar_prev = self.schedule.alpha_bar(t_prev)
        pred_x0, eps = _estimates(output, x_t, abar_t, self.prediction, self.clip_x0)
        # eq. 16 of DDIM
        sigma = self.eta * math.sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
        # eq. 12 of DDIM
        prev = math.sqrt(abar_prev) * pred_x0 + math.sqrt(max(1 - abar_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            if noise is None:
                raise ValueError("DDIM with eta > 0 needs noise")
            prev = prev + sigma * noise
        return StepOutput(
            prev.astype(np.float32, copy=False), pred_x0.astype(np.float32, copy=False)
        )


@dataclass(frozen=True)
class DPMSolverPP2MSampler:
    """DPM-Solver++(2M), the multistep second-order data-prediction solver (Lu et al. 2022).

    The history is ``(previous x_0 prediction, previous step size h)``; the first step
    and the final step to the clean image are first order (DDIM), as in the paper's
    Algorithm 2 with ``lower_order_final``.
    """

    schedule: NoiseSchedule
    clip_x0: float | None = None
    spacing: str = "logsnr"
    prediction: str = "epsilon"

    def __post_init__(self) -> None:
        check_prediction(self.prediction)

    @property
    def stochastic(self) -> bool:
        return False

    def timesteps(self, steps: int | None, start: int | None = None) -> list[int]:
        return spaced_timesteps(self.schedule, steps, self.spacing, start)

    def _lambda(self, abar: float) -> float:
        # lambda_t = log(alpha_t / sigma_t), the half log-SNR
        return 0.5 * (math.log(abar) - math.log1p(-abar))

    def step(self, output, t, t_prev, x_t, *, noise=None, history=None) -> StepOutput:
        abar_t = self.schedule.alpha_bar(t)
        abar_prev = self.schedule.alpha_bar(t_prev)
        pred_x0, _ = _estimates(output, x_t, abar_t, self.prediction, self.clip_x0)
        if t_prev < 0:
            # final step to sigma = 0: the first-order update returns x_0 itself
            return StepOutput(
                pred_x0.astype(np.float32, copy=False), pred_x0.astype(np.float32, copy=False)
            )
        h = self._lambda(abar_prev) - self._lambda(abar_t)
        sigma_ratio = math.sqrt((1 - abar_prev) / (1 - abar_t))
        alpha_prev = math.sqrt(abar_prev)
        phi = math.expm1(-h)  # e^{-h} - 1
        if history is None:
            d = pred_x0  # eq. 8 of DPM-Solver++ (first order, = DDIM)
        else:
            prev_x0, prev_h = history
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * pred_x0 - (1 / (2 * r)) * prev_x0  # Alg. 2 of DPM-Solver++
        prev = sigma_ratio * x_t - alpha_prev * phi * d
        return StepOutput(
            prev.astype(np.float32, copy=False),
            pred_x0.astype(np.float32, copy=False),
            (pred_x0, h),
        )


def make_sampler(
    name: str,
    schedule: NoiseSchedule,
    *,
    eta: float = 0.0,
    clip_x0: float | None = 1.0,
    prediction: str = "epsilon",
) -> Sampler:
    """Build a sampler by its CLI name: ``ddpm``, ``ddim`` or ``dpmpp``.

    ``prediction`` is what the network outputs (``epsilon``, ``x0`` or ``v``; the
    model's metadata says).

    ``clip_x0`` thresholds each step's clean-image prediction to [-clip_x0, clip_x0]:
    tilesr's training targets are clipped to the data range [-1, 1], so a prediction
    outside it is an error, and one wild sample would otherwise spoil a sample mean
    (eq. 15 of DDPM and the thresholding of DPM-Solver++ sec. 5). None disables it.
    """
    if name == "ddpm":
        return DDPMSampler(schedule, form="x0", clip_x0=clip_x0, prediction=prediction)
    if name == "ddim":
        return DDIMSampler(schedule, eta=eta, clip_x0=clip_x0, prediction=prediction)
    if name == "dpmpp":
        return DPMSolverPP2MSampler(schedule, clip_x0=clip_x0, prediction=prediction)
    raise TilesrError(f"sampler must be one of {', '.join(SAMPLER_NAMES)}, got {name!r}")
