"""Percentile normalisation to the model's [-1, 1] range, and its inverse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tilesr.errors import TilesrError


@dataclass(frozen=True)
class IntensityRange:
    """The input intensities mapped to -1 and +1."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            raise TilesrError(f"intensity range must be finite, got {self.low} to {self.high}")

    @property
    def span(self) -> float:
        # a flat image would divide by zero; any positive span maps it to -1
        return max(self.high - self.low, 1e-12)

    def normalize(self, image: ArrayLike) -> NDArray[np.float32]:
        arr = np.asarray(image, dtype=np.float32)
        return ((arr - np.float32(self.low)) * np.float32(2.0 / self.span) - 1.0).astype(np.float32)

    def denormalize(self, image: ArrayLike) -> NDArray[np.float32]:
        arr = np.asarray(image, dtype=np.float32)
        return ((arr + 1.0) * np.float32(self.span / 2.0) + np.float32(self.low)).astype(np.float32)


def percentile_range(image: ArrayLike, low: float = 0.1, high: float = 99.9) -> IntensityRange:
    """Intensities at the ``low`` and ``high`` percentiles of ``image``."""
    if not 0 <= low < high <= 100:
        raise TilesrError(f"percentiles need 0 <= low < high <= 100, got {low} and {high}")
    lo, hi = np.percentile(np.asarray(image, dtype=np.float64), [low, high])
    return IntensityRange(float(lo), float(hi))
