"""How well an uncertainty map predicts the actual error of a restoration.

Given the error (ground truth minus restoration) and the predicted standard deviation
sigma on one intensity scale (:func:`tilesr.metrics.normalize_pair`; sigma times its
``pred_scale``), a calibrated map has 68.27 % of pixels with ``|error| <= sigma`` and
95.45 % with ``|error| <= 2 sigma`` (a Gaussian's), and ranks where the error is large:
the Spearman correlation of the RMS error and the RMS sigma over square patches. These
are the figures of the quality issue, computed one way for ``tilesr evaluate``,
``tools/bench_care.py`` and ``tools/calibrate.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import spearmanr

from tilesr.errors import TilesrError

#: edge of the square patches whose RMS error and RMS sigma are rank-correlated
PATCH = 16


@dataclass(frozen=True)
class CalibrationTerms:
    """What the calibration of one plane is computed from (planes and images pool)."""

    z: NDArray[np.float64]  # |error| / sigma per pixel (inf where sigma is 0)
    patch_error: NDArray[np.float64]  # RMS error per whole patch
    patch_sigma: NDArray[np.float64]  # RMS sigma per whole patch


def calibration_terms(error: ArrayLike, sigma: ArrayLike, patch: int = PATCH) -> CalibrationTerms:
    """The terms of one (H, W) plane: ``error`` and ``sigma`` on one intensity scale."""
    err = np.asarray(error, dtype=np.float64)
    s = np.abs(np.asarray(sigma, dtype=np.float64))
    if err.ndim != 2 or err.shape != s.shape:
        raise TilesrError(f"error and sigma must be equal 2-D planes, got {err.shape}, {s.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s > 0, np.abs(err) / s, np.inf)
    h, w = (n - n % patch for n in err.shape)

    def rms(x: NDArray[np.float64]) -> NDArray[np.float64]:
        blocks = x[:h, :w].reshape(h // patch, patch, w // patch, patch)
        return np.sqrt((blocks**2).mean(axis=(1, 3))).ravel()

    return CalibrationTerms(z.ravel(), rms(err), rms(s))


def calibration(terms: Sequence[CalibrationTerms]) -> dict[str, float]:
    """Coverage within 1 and 2 sigma and the patch rank correlation, over all ``terms``.

    The correlation is NaN where no patch fits or sigma is the same everywhere.
    """
    if not terms:
        raise TilesrError("no planes to compute a calibration from")
    z = np.concatenate([t.z for t in terms])
    err = np.concatenate([t.patch_error for t in terms])
    sig = np.concatenate([t.patch_sigma for t in terms])
    rho = float(spearmanr(err, sig).statistic) if sig.size > 1 and np.ptp(sig) > 0 else np.nan
    return {
        "cover_1sigma": float(np.mean(z <= 1.0)),
        "cover_2sigma": float(np.mean(z <= 2.0)),
        "spearman_patch": rho,
    }
