"""The attention U-Net and its checkpoints (needs the ``train`` extra: PyTorch)."""

from tilesr.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tilesr.model.unet import UNet, UNetConfig

__all__ = ["Checkpoint", "UNet", "UNetConfig", "load_checkpoint", "save_checkpoint"]
