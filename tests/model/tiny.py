"""A tiny randomly initialised U-Net checkpoint, shared by the model, export and denoiser tests."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from tilesr.metadata import ModelMetadata, ScheduleSpec
from tilesr.model.checkpoint import Checkpoint, save_checkpoint
from tilesr.model.unet import UNet, UNetConfig


def tiny_config() -> UNetConfig:
    """Two levels (size multiple 4), attention at the lower one and in the bottleneck."""
    return UNetConfig(
        channels=(8, 16),
        bottleneck=16,
        attention=(False, True),
        time_dim=32,
        heads=2,
        mid_attention=True,
    )


def tiny_metadata(config: UNetConfig) -> ModelMetadata:
    return ModelMetadata(
        schedule=ScheduleSpec(kind="linear", timesteps=100),
        scale=2,
        tile_size=32,
        overlap=8,
        size_multiple=config.size_multiple,
    )


def tiny_checkpoint(
    path: Path, *, seed: int = 0, ema_offset: float = 0.01, target_optics: str | None = None
) -> Checkpoint:
    """Save and return a checkpoint whose EMA weights differ from the raw ones by ``ema_offset``.

    ``target_optics``: a network with a target-optics input, its metadata naming this one.
    """
    config = replace(tiny_config(), target_optics_input=target_optics is not None)
    metadata = replace(tiny_metadata(config), target_optics=target_optics)
    torch.manual_seed(seed)
    model = UNet(config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ema = {k: v + ema_offset if v.is_floating_point() else v.clone() for k, v in state.items()}
    ckpt = Checkpoint(
        unet=config.to_dict(),
        metadata=asdict(metadata),
        model=state,
        ema=ema,
        step=7,
        train_config={"lr": 1e-3, "name": "tiny"},
        history={"loss": [1.0, 0.5]},
    )
    save_checkpoint(path, ckpt)
    return ckpt
