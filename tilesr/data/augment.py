"""Dihedral augmentation (flips and 90-degree rotations) applied identically to a pair."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Dihedral:
    """One of the 8 symmetries of the square: rotate by ``rot90`` quarter turns, then flip.

    The same transform applied to an LR-on-HR-grid conditioning image and its HR
    target keeps them registered (both are square patches on one grid).
    """

    rot90: int = 0
    flip: bool = False

    @classmethod
    def random(cls, rng: np.random.Generator) -> Dihedral:
        """A uniformly random symmetry."""
        return cls(int(rng.integers(4)), bool(rng.integers(2)))

    def apply(self, image: NDArray) -> NDArray:
        """Transform the last two axes of ``image`` (a contiguous copy)."""
        out = np.rot90(image, self.rot90, axes=(-2, -1))
        if self.flip:
            out = out[..., ::-1]
        return np.ascontiguousarray(out)


def augment_pair(
    cond: NDArray, target: NDArray, rng: np.random.Generator
) -> tuple[NDArray, NDArray]:
    """Apply one random :class:`Dihedral` to both images."""
    transform = Dihedral.random(rng)
    return transform.apply(cond), transform.apply(target)
