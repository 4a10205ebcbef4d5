"""Data consistency: on large scales the restoration must agree with its own input.

The input is the output binned by the camera (``scale`` x ``scale`` pixels) plus noise.
Binned back to the input's grid, a restoration should therefore match the input wherever
the noise has averaged out: on scales of several input pixels. :func:`make_consistent`
enforces that on each sample: it bins the sample, takes the difference to the binned
conditioning image (the input, normalised and upsampled), smooths that difference with
a Gaussian of ``sigma`` input pixels (the noise averages out over ~(2.5 sigma)^2 input
pixels, the restored detail is finer than sigma) and adds it back, upsampled by pixel
replication (which bins back to exactly the smoothed difference).

Why: a network sees one tile and learns what the targets of its training mix share; on
the scales of a whole field the bundled networks' response to intensity is not linear
on real widefield pairs such as W2S, whose target is the same microscope's frame
average, and the input measures those scales. On the W2S validation fields
(docs/model-card.md, tools/probe_error_bands.py) all that consistency recovers is on
scales above 50 HR pixels, 70 % of it at the scale of the whole field. It is wrong in
the other direction: where the wanted output is *not* the input's optics (a deblurred,
background-free target, like the simulator's), it puts the input's blur and background
back. So it is an option of the restoration, recorded in the output, off unless the
model or the user says otherwise.

Everything is local (a binning and a truncated Gaussian), so a block computes it on
its canvas and its pixels equal those of the whole image computed at once, as long as
the canvas holds :func:`consistency_reach` pixels beyond the block.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tilesr.data.resize import bin_mean
from tilesr.diffusion.uncertainty import POOL_TRUNCATE, pooling_reach


def consistency_reach(sigma: float, scale: int) -> int:
    """HR pixels beyond an output pixel that :func:`make_consistent` reads."""
    return 0 if sigma <= 0 else scale * (pooling_reach(sigma) + 2)


def make_consistent(
    samples: NDArray[np.floating],
    cond: NDArray[np.floating],
    *,
    sigma: float,
    scale: int,
    origin: tuple[int, int] = (0, 0),
) -> NDArray[np.float32]:
    """``samples`` (n, H, W) made to agree with ``cond`` (H, W) on scales above ``sigma``.

    Both in model space on one canvas whose top-left pixel is HR pixel ``origin`` of the
    image (HR pixel ``y`` lies in input pixel ``y // scale``: the bins follow the image's
    grid, not the canvas's). ``sigma``: Gaussian sigma in input pixels; 0 returns the
    samples unchanged.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if sigma <= 0:
        return samples
    height, width = cond.shape
    # the canvas rows and columns that fill whole bins of the image's grid
    oy, ox = (-origin[0]) % scale, (-origin[1]) % scale
    h, w = (height - oy) // scale * scale, (width - ox) // scale * scale
    rows, cols = slice(oy, oy + h), slice(ox, ox + w)
    measured = bin_mean(np.asarray(cond, np.float64)[rows, cols], scale)
    residual = measured[None] - bin_mean(samples[:, rows, cols].astype(np.float64), scale)
    smooth = ndimage.gaussian_filter(
        residual, (0.0, sigma, sigma), truncate=POOL_TRUNCATE, mode="reflect"
    )
    correction = np.repeat(np.repeat(smooth, scale, axis=1), scale, axis=2)
    # partial bins at the canvas edge (beyond every block) take their neighbour's value
    pad = ((0, 0), (oy, height - oy - h), (ox, width - ox - w))
    return (samples + np.pad(correction, pad, mode="edge")).astype(np.float32)
