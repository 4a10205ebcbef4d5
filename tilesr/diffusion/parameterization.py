"""What the network predicts, and how to turn its output into (x0, eps) and back.

A diffusion network can be trained to predict the noise (``epsilon``, DDPM), the clean
image (``x0``) or the velocity ``v = sqrt(abar) eps - sqrt(1 - abar) x0`` (Salimans &
Ho 2022, sec. 4). The samplers need the clean-image estimate and the matching noise;
these functions are the only place that knows the three forms. They are plain
arithmetic, so they serve NumPy arrays in the samplers and torch tensors in training.

Why it matters: from an epsilon prediction, x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
amplifies the network's error by 1 / sqrt(abar), about 160 at t = T-1 of the linear
schedule. An ``x0`` or ``v`` network predicts the clean image directly at high noise,
where its output is the posterior-mean (regression) estimate E[x0 | cond].
"""

from __future__ import annotations

import math
from typing import Any

from tilesr.errors import TilesrError
from tilesr.metadata import PREDICTIONS

__all__ = ["PREDICTIONS", "check_prediction", "output_for_x0", "split_output", "training_target"]


def check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise TilesrError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")


def split_output(output: Any, x_t: Any, abar: float, prediction: str) -> tuple[Any, Any]:
    """``(x0, eps)`` implied by the network ``output`` at x_t with signal level ``abar``."""
    a, s = math.sqrt(abar), math.sqrt(1.0 - abar)
    if prediction == "epsilon":
        return (x_t - s * output) / a, output  # eq. 15 of DDPM
    if prediction == "x0":
        return output, (x_t - a * output) / s
    if prediction == "v":
        # x_t = a x0 + s eps and v = a eps - s x0, with a^2 + s^2 = 1 (Salimans & Ho, eq. 9)
        return a * x_t - s * output, s * x_t + a * output
    raise TilesrError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")


def output_for_x0(x0: Any, x_t: Any, abar: float, prediction: str) -> Any:
    """The network output that :func:`split_output` turns into ``x0`` at ``x_t``."""
    a, s = math.sqrt(abar), math.sqrt(1.0 - abar)
    if prediction == "epsilon":
        return (x_t - a * x0) / s
    if prediction == "x0":
        return x0
    if prediction == "v":
        return (a * x_t - x0) / s
    raise TilesrError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")


def training_target(
    x0: Any, noise: Any, sqrt_abar: Any, sqrt_one_minus: Any, prediction: str
) -> Any:
    """What the network learns to output for x_t = sqrt_abar x0 + sqrt_one_minus noise.

    ``sqrt_abar`` and ``sqrt_one_minus`` broadcast against the batch (one value per item).
    """
    if prediction == "epsilon":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        return sqrt_abar * noise - sqrt_one_minus * x0
    raise TilesrError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
