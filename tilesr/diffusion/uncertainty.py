"""The uncertainty map: the predicted standard deviation of the restored image's error.

n posterior samples x_1..x_n give the restoration m = mean(x_i). If they are draws from
the posterior p(x | input) with variance s^2 per pixel, the truth x differs from m by
an error of variance s^2 (1 + 1/n): the posterior's own spread plus the error of
estimating its mean from n draws. tilesr reports

    sigma = scale * sqrt(G * var_1(x_i) * (1 + 1/n))

where var_1 is the unbiased sample variance (ddof 1), G an optional Gaussian pooling of
that variance over ``pool_px`` pixels and ``scale`` a calibration factor fitted on
held-out validation data (the model's metadata carries both). Pooling is physics, not
decoration: neighbouring pixels of a band-limited (PSF-blurred) image share their
uncertainty, and with a handful of samples the per-pixel variance has only n - 1 degrees
of freedom (heavy tails); pooling over a few pixels gives many more. ``scale`` absorbs
what sampling cannot see (the network's own error, a few-step sampler's narrower
spread). With ``scale`` 1 and no pooling sigma is sqrt((n+1)/(n-1)) times the plain
standard deviation over the samples.

Antithetic samples (pairs m + d, m - d: :class:`tilesr.diffusion.sampling.SampleNoise`)
are not independent draws. For a sampler that is linear in its noise the pair's mean is
the posterior mean itself, and each deviation d a full draw's: the error variance is
then the plain mean of the squared deviations (var_0, ddof 0), with no (1 + 1/n) term,
and ``var_1`` would double it. A real sampler is close to linear at a few steps
(tools/bench_care.py), and the fitted ``scale`` absorbs the rest.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: Gaussian pooling is truncated at this many sigmas (scipy's default is 4)
POOL_TRUNCATE = 4.0


def pooling_reach(pool_px: float) -> int:
    """Pixels on each side that the pooling of :func:`predictive_std` reads."""
    return 0 if pool_px <= 0 else int(POOL_TRUNCATE * pool_px + 0.5)


def predictive_std(
    samples: NDArray[np.floating],
    *,
    scale: float = 1.0,
    pool_px: float = 0.0,
    antithetic: bool = False,
) -> NDArray[np.float32]:
    """Predicted error std of ``samples.mean(axis=0)`` from ``samples`` (n, H, W).

    Zero for a single sample (one draw says nothing about the spread). ``antithetic``:
    the samples are antithetic pairs (see the module docstring). ``pool_px``
    (Gaussian sigma in pixels; 0: none) pools the variance over neighbours, reading
    :func:`pooling_reach` pixels beyond each output pixel (the engine's canvases hold
    that margin, so blocks stay independent of the chunking).
    """
    n = samples.shape[0]
    if n < 2:
        return np.zeros(samples.shape[1:], dtype=np.float32)
    var = np.var(samples, axis=0, ddof=0 if antithetic else 1, dtype=np.float64)
    if pool_px > 0:
        var = ndimage.gaussian_filter(var, pool_px, truncate=POOL_TRUNCATE, mode="reflect")
    of_the_mean = 1.0 if antithetic else 1.0 + 1.0 / n
    return (scale * np.sqrt(var * of_the_mean)).astype(np.float32)
