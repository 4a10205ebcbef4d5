"""Tell one network which optics its target has: the same as the input's, or sharper.

The training mix holds two kinds of pair. W2S's targets are frame averages of the same
microscope (the input's optics, denoised and resampled); the simulator's, the forward
model's and SIM/STED targets are sharper than their inputs. A network with
``target_optics_input`` takes one more conditioning channel, a constant plane: -1 for
the same optics, +1 for sharper, 0 for unknown. In training every source's pairs carry
their own kind, and a share of them carry "unknown", so that value learns the mix's
answer (the model's behaviour without the input). It gives one network either kind of
restoration on demand; on the bundled recipe it did not raise quality on either kind
for the diffusion model (docs/model-card.md, "Telling the network the target's optics").

The engine's interface stays one conditioning channel: :class:`FixedTargetOptics` adds
the plane the model's metadata names (``target_optics``), so the choice is made at
export and recorded in the ``.onnx`` file.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tilesr.errors import TilesrError
from tilesr.metadata import TARGET_OPTICS_PLANE, ModelMetadata


class FixedTargetOptics(nn.Module):
    """``forward(noisy, cond, t)`` of ``network`` with the target-optics plane appended."""

    def __init__(self, network: Any, optics: str) -> None:
        super().__init__()
        self.network = network
        self.value = TARGET_OPTICS_PLANE[optics]

    @property
    def size_multiple(self) -> int:
        return int(self.network.size_multiple)

    def forward(self, noisy: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        plane = torch.full_like(cond, self.value)
        output: torch.Tensor = self.network(noisy, torch.cat([cond, plane], dim=1), t)
        return output


def engine_network(network: Any, metadata: ModelMetadata, source: str) -> Any:
    """``network`` as the engine calls it: one conditioning channel in.

    A network with a target-optics input gets the plane ``metadata.target_optics`` says;
    any other network is returned as it is. Raises TilesrError naming ``source`` when
    the two disagree.
    """
    has_input = bool(getattr(getattr(network, "config", None), "target_optics_input", False))
    if has_input != (metadata.target_optics is not None):
        raise TilesrError(
            f"{source}: the network has a target-optics input but its metadata names no "
            "target_optics"
            if has_input
            else f"{source}: metadata target_optics {metadata.target_optics!r} needs a "
            "network trained with data.target_optics: true"
        )
    if not has_input:
        return network
    assert metadata.target_optics is not None
    return FixedTargetOptics(network, metadata.target_optics)
