"""Predictor + stochastic refinement in one network (Whang et al., CVPR 2022).

A regression network P (CARE-like, trained first and then frozen) gives the
posterior-mean-like estimate p = P(cond) in one pass; a diffusion network R learns only
the residual r = x0 - p, conditioned on both cond and p. The mean of refined samples
starts from the regressor's quality instead of having to relearn it at every noise
level, and their spread is the uncertainty.

:class:`RefinedUNet` packs both into one module whose interface is that of any tilesr
diffusion model in image space, so the engine and the samplers need no special case:
for x_t = sqrt(abar) x0 + sqrt(1 - abar) eps it computes the residual's noisy state
r_t = x_t - sqrt(abar) p = sqrt(abar) r0 + sqrt(1 - abar) eps, lets R predict the
residual's velocity and returns the image's clean estimate p + r0_hat: an ``x0``
prediction. The price: P runs at every evaluation (R and P cost about the same, so one
evaluation of this network counts as two of either).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tilesr.diffusion.schedule import build_schedule
from tilesr.metadata import ScheduleSpec
from tilesr.model.unet import UNet, UNetConfig

#: key of the predictor's UNetConfig inside a refined model's config dict
PREDICTOR_KEY = "predictor"


class RefinedUNet(nn.Module):
    """``forward(noisy, cond, t)`` -> the image's x0 estimate p + r0_hat (see module doc)."""

    sqrt_abar: torch.Tensor
    sqrt_one_minus: torch.Tensor

    def __init__(self, predictor: UNetConfig, refiner: UNetConfig, schedule: ScheduleSpec) -> None:
        super().__init__()
        if not predictor.conditioning_only:
            raise ValueError("the predictor of a refined model must be a regression network")
        if refiner.cond_channels != 2 or refiner.conditioning_only:
            raise ValueError("the refiner must be a diffusion U-Net with cond_channels=2")
        if predictor.target_optics_input or refiner.target_optics_input:
            raise ValueError("a refined model has no target-optics input")
        self.predictor = UNet(predictor).requires_grad_(False)
        self.refiner = UNet(refiner)
        abar = torch.tensor(build_schedule(schedule).alphas_cumprod)
        # the schedule rides along as constants (rebuilt from the metadata, not stored)
        self.register_buffer("sqrt_abar", abar.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_one_minus", (1 - abar).sqrt().float(), persistent=False)

    @property
    def size_multiple(self) -> int:
        return max(self.predictor.size_multiple, self.refiner.size_multiple)

    def train(self, mode: bool = True) -> RefinedUNet:
        super().train(mode)
        self.predictor.eval()  # frozen: no dropout, ever
        return self

    def predict_residual_velocity(
        self,
        residual_t: torch.Tensor,
        cond: torch.Tensor,
        prediction: torch.Tensor,
        t: torch.Tensor,
    ) -> torch.Tensor:
        """What training fits: R's velocity of the residual, given cond and P's output."""
        return self.refiner(residual_t, torch.cat([cond, prediction], dim=1), t)

    def forward(self, noisy: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        prediction = self.predictor(noisy, cond, t)
        index = t.round().long()
        a = self.sqrt_abar[index].reshape(-1, 1, 1, 1)
        s = self.sqrt_one_minus[index].reshape(-1, 1, 1, 1)
        residual_t = noisy - a * prediction
        v = self.predict_residual_velocity(residual_t, cond, prediction, t)
        return prediction + a * residual_t - s * v  # x0 = a x_t - s v (Salimans & Ho)


def model_config_dict(refiner: UNetConfig, predictor: UNetConfig | None) -> dict[str, Any]:
    """The ``unet`` entry of a checkpoint: the refiner's config, the predictor's nested."""
    data = refiner.to_dict()
    if predictor is not None:
        data[PREDICTOR_KEY] = predictor.to_dict()
    return data


def network_configs(config: dict[str, Any]) -> tuple[UNetConfig, UNetConfig | None]:
    """Inverse of :func:`model_config_dict`: the network's config and its predictor's."""
    data = dict(config)
    nested = data.pop(PREDICTOR_KEY, None)
    predictor = None if nested is None else UNetConfig.from_dict(nested)
    return UNetConfig.from_dict(data), predictor


def canonical_config(config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``unet`` entry with every field spelled out, defaults included.

    Checkpoints written before a field existed (``cond_channels``) lack it; comparing
    canonical entries lets such a run resume when its network is the same.
    """
    return model_config_dict(*network_configs(config))


def build_network(config: dict[str, Any], schedule: ScheduleSpec) -> nn.Module:
    """A UNet, or a RefinedUNet when ``config`` nests a predictor."""
    network, predictor = network_configs(config)
    if predictor is None:
        return UNet(network)
    return RefinedUNet(predictor, network, schedule)
