"""PyTorch backend (``train`` extra): runs a :class:`~tilesr.model.unet.UNet` behind the
:class:`~tilesr.denoisers.base.Denoiser` protocol, for validation during training and
for checking an export against its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from tilesr.errors import TilesrError
from tilesr.metadata import ModelMetadata


def check_size_multiple(metadata: ModelMetadata, network_multiple: int, source: str) -> None:
    """Refuse metadata that would let the engine feed the network sizes it cannot take."""
    if metadata.size_multiple % network_multiple:
        raise TilesrError(
            f"{source}: metadata size_multiple {metadata.size_multiple} is not a multiple of "
            f"the network's {network_multiple}"
        )


@dataclass
class TorchDenoiser:
    """A :class:`~tilesr.denoisers.base.Denoiser` running a PyTorch U-Net.

    Parameters
    ----------
    model
        The network: ``model(noisy, cond, t)`` returns the predicted noise. Put in eval
        mode and moved to ``device``.
    metadata
        What the model declares about itself (schedule, scale, tile geometry).
    device
        Torch device the network runs on ("cpu", "cuda", "cuda:1", ...).
    """

    model: torch.nn.Module
    metadata: ModelMetadata
    device: str = "cpu"

    def __post_init__(self) -> None:
        try:
            self._device = torch.device(self.device)
        except RuntimeError:
            raise TilesrError(f"unknown torch device {self.device!r}") from None
        self.model = self.model.to(self._device).eval()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, ema: bool = True, device: str = "cpu"
    ) -> TorchDenoiser:
        """Load a training checkpoint; ``ema`` selects the EMA weights (the exported ones)."""
        from tilesr.model.checkpoint import build_model, load_checkpoint
        from tilesr.model.target_optics import engine_network

        ckpt = load_checkpoint(path)
        model = build_model(ckpt, ema=ema, source=str(path))
        metadata = ModelMetadata.from_dict(dict(ckpt.metadata), source=str(path))
        check_size_multiple(metadata, model.size_multiple, str(path))
        model = engine_network(model, metadata, str(path))
        return cls(model, metadata, device=device)

    def predict(
        self, noisy: NDArray[np.float32], cond: NDArray[np.float32], t: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        with torch.inference_mode():
            eps = self.model(self._tensor(noisy), self._tensor(cond), self._tensor(t))
        return np.asarray(eps.float().cpu().numpy(), dtype=np.float32)

    def _tensor(self, array: NDArray[np.float32]) -> torch.Tensor:
        arr = np.ascontiguousarray(array, dtype=np.float32)
        if not arr.flags.writeable:  # e.g. a broadcast cond: torch refuses to share it
            arr = arr.copy()
        return torch.from_numpy(arr).to(self._device)
