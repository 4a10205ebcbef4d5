"""The protocol every network backend implements (PyTorch for training, ONNX for the engine)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from tilesr.metadata import ModelMetadata


@runtime_checkable
class Denoiser(Protocol):
    """The network: its output for a noisy image, its conditioning image and timestep.

    The output is what ``metadata.prediction`` names: the noise (``epsilon``), the clean
    image (``x0``) or the velocity (``v``); see :mod:`tilesr.diffusion.parameterization`.
    Arrays are NumPy float32: ``noisy`` and ``cond`` have shape (N, 1, H, W), ``t`` has
    shape (N,) and holds training-schedule timesteps; the result has shape (N, 1, H, W).
    H and W are multiples of ``metadata.size_multiple``. A regression model
    (``metadata.objective == "regression"``) ignores ``noisy`` and ``t``.
    """

    metadata: ModelMetadata

    def predict(
        self, noisy: NDArray[np.float32], cond: NDArray[np.float32], t: NDArray[np.float32]
    ) -> NDArray[np.float32]: ...
