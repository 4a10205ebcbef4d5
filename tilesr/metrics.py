"""Image quality metrics on NumPy arrays (torch-free): SSIM, MS-SSIM, PSNR, MAE, NRMSE.

SSIM, PSNR and NRMSE come from scikit-image. scikit-image has no MS-SSIM, so
:func:`ms_ssim` builds it (Wang, Simoncelli & Bovik 2003) from the same luminance and
contrast-structure terms scikit-image uses for SSIM (Gaussian window 11 / sigma 1.5,
population covariance, K1 = 0.01, K2 = 0.03), which makes a one-scale MS-SSIM equal to
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.

Comparing a restoration with a ground truth of a different intensity scale (W2S
targets were contrast-stretched on their own; network outputs live in [-1, 1]) needs a
normalisation first; :func:`normalize_pair` offers CARE's recipe (Weigert et al. 2018):
percentile-normalise the ground truth, then fit the prediction to it with a
least-squares scale and offset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity
from skimage.transform import downscale_local_mean

from tilesr.errors import TilesrError, check_choice

# Table of Wang et al. 2003 (sec. 3.3): exponents of scales 1 (finest) to 5.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_SIGMA = 1.5
_TRUNCATE = 3.5  # 11-tap window with sigma 1.5, as scikit-image uses for gaussian_weights
_WIN = 2 * int(_TRUNCATE * _SIGMA + 0.5) + 1
_K1, _K2 = 0.01, 0.03

NORMALIZE_MODES = ("match", "percentile", "none")


@dataclass(frozen=True)
class ImageMetrics:
    """Quality of a prediction against its ground truth (higher SSIM/MS-SSIM/PSNR is better)."""

    ssim: float
    ms_ssim: float
    psnr: float
    mae: float
    nrmse: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class NormalizedPair:
    """A prediction and ground truth on one intensity scale, and that scale's data range.

    ``pred_scale``: the factor the prediction was multiplied by (an offset aside), which
    puts anything in the prediction's units, such as its uncertainty, on the same scale.
    """

    pred: NDArray[np.float64]
    gt: NDArray[np.float64]
    data_range: float | None
    pred_scale: float = 1.0


def _as_planes(image: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(image, dtype=np.float64)
    # drop singleton axes (e.g. (1, 1, H, W) batches) so a 2-D image stays 2-D
    squeezed = arr.reshape([s for s in arr.shape[:-2] if s != 1] + list(arr.shape[-2:]))
    if squeezed.ndim < 2:
        raise TilesrError(f"{name} must be an image with at least 2 axes, got shape {arr.shape}")
    return squeezed.reshape((-1, *squeezed.shape[-2:]))


def _ssim_terms(
    x: NDArray[np.float64], y: NDArray[np.float64], data_range: float
) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure term, computed exactly as scikit-image does."""

    def blur(a: NDArray[np.float64]) -> NDArray[np.float64]:
        return ndimage.gaussian_filter(a, sigma=_SIGMA, truncate=_TRUNCATE, mode="reflect")

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    luminance = (2 * ux * uy + c1) / (ux**2 + uy**2 + c1)
    cs = (2 * vxy + c2) / (vx + vy + c2)
    pad = (_WIN - 1) // 2  # ignore the filter radius at the edges, as scikit-image does
    inner = (slice(pad, -pad), slice(pad, -pad))
    return float((luminance * cs)[inner].mean()), float(cs[inner].mean())


def ms_ssim_scales(shape: tuple[int, ...], max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """How many MS-SSIM scales fit an image: the coarsest must still hold one 11-px window.

    A 176-px side takes all five scales of Wang et al.; smaller images use fewer scales
    (88 px: four, 44 px: three, 22 px: two, 11 px: one) with the first weights
    renormalised to sum to one.
    """
    side = min(shape[-2:])
    if side < _WIN:
        raise TilesrError(
            f"MS-SSIM needs images of at least {_WIN}x{_WIN} pixels, got {tuple(shape)}"
        )
    scales = 1
    while scales < max_scales and side // 2**scales >= _WIN:
        scales += 1
    return scales


def ms_ssim(
    pred: ArrayLike, gt: ArrayLike, *, data_range: float, scales: int | None = None
) -> float:
    """Multi-scale SSIM (Wang et al. 2003) of one 2-D image pair.

    Parameters
    ----------
    pred, gt
        2-D images of equal shape.
    data_range
        The dynamic range used for the stabilising constants C1 and C2.
    scales
        Number of scales (1-5); by default as many as :func:`ms_ssim_scales` allows.

    Returns
    -------
    float
        prod_j cs_j^w_j over the finer scales times SSIM^w_M at the coarsest scale, each
        image halved by 2x2 averaging between scales. Negative contrast-structure terms
        are clipped to zero (as TensorFlow's implementation does) so the power is real.
    """
    x = np.asarray(pred, dtype=np.float64)
    y = np.asarray(gt, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise TilesrError(
            f"MS-SSIM needs two 2-D images of equal shape, got {x.shape} and {y.shape}"
        )
    fit = ms_ssim_scales(x.shape)
    if scales is None:
        scales = fit
    elif not 1 <= scales <= fit:
        raise TilesrError(f"MS-SSIM scales must be in [1, {fit}] for shape {x.shape}, got {scales}")
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales], dtype=np.float64)
    weights /= weights.sum()
    value = 1.0
    for j in range(scales):
        ssim_j, cs_j = _ssim_terms(x, y, data_range)
        term = ssim_j if j == scales - 1 else cs_j
        value *= max(term, 0.0) ** weights[j]
        if j < scales - 1:
            # crop to even size so 2x2 averaging covers whole blocks
            h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
            x = downscale_local_mean(x[:h, :w], (2, 2))
            y = downscale_local_mean(y[:h, :w], (2, 2))
    return float(value)


def _plane_metrics(
    x: NDArray[np.float64], y: NDArray[np.float64], data_range: float
) -> ImageMetrics:
    ssim = structural_similarity(
        x,
        y,
        data_range=data_range,
        gaussian_weights=True,
        sigma=_SIGMA,
        use_sample_covariance=False,
    )
    if np.array_equal(x, y):
        psnr = float("inf")  # skimage would divide by zero and warn
    else:
        psnr = float(peak_signal_noise_ratio(y, x, data_range=data_range))
    if not np.any(y):
        nrmse = float("inf") if np.any(x) else 0.0  # euclidean norm of gt is zero
    else:
        nrmse = float(normalized_root_mse(y, x))
    return ImageMetrics(
        ssim=float(ssim),
        ms_ssim=ms_ssim(x, y, data_range=data_range),
        psnr=psnr,
        mae=float(np.mean(np.abs(x - y))),
        nrmse=nrmse,
    )


def image_metrics(
    pred: ArrayLike, gt: ArrayLike, *, data_range: float | None = None
) -> ImageMetrics:
    """SSIM, MS-SSIM, PSNR, MAE and NRMSE of ``pred`` against ``gt``.

    Parameters
    ----------
    pred, gt
        Images of equal shape ``(..., H, W)``; leading axes are planes (z, channels,
        batch) whose metrics are averaged. Both sides need at least 11 pixels.
    data_range
        Dynamic range for SSIM and PSNR (2 for the model's [-1, 1] space). ``None``
        takes ``gt.max() - gt.min()``, the range of the ground truth.

    Returns
    -------
    ImageMetrics
        SSIM with a Gaussian 11/1.5 window and population covariance (Wang et al. 2004),
        MS-SSIM (:func:`ms_ssim`), PSNR in dB (inf for identical images), mean absolute
        error, and the RMSE normalised by the ground truth's Euclidean norm.
    """
    p_arr = np.asarray(pred)
    g_arr = np.asarray(gt)
    if p_arr.shape != g_arr.shape:
        raise TilesrError(
            f"prediction and ground truth shapes differ: {p_arr.shape} versus {g_arr.shape}"
        )
    x = _as_planes(p_arr, "prediction")
    y = _as_planes(g_arr, "ground truth")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise TilesrError("prediction and ground truth must be finite (found NaN or inf)")
    if data_range is None:
        data_range = float(y.max() - y.min())
    if not data_range > 0:
        raise TilesrError(f"data_range must be positive, got {data_range}")
    per_plane = [_plane_metrics(xp, yp, float(data_range)) for xp, yp in zip(x, y, strict=True)]
    if len(per_plane) == 1:
        return per_plane[0]
    return ImageMetrics(
        **{
            key: float(np.mean([getattr(m, key) for m in per_plane]))
            for key in ("ssim", "ms_ssim", "psnr", "mae", "nrmse")
        }
    )


def percentile_normalize(
    image: ArrayLike, low: float = 0.1, high: float = 99.9
) -> NDArray[np.float64]:
    """Map the ``low`` and ``high`` percentiles of ``image`` to 0 and 1 (not clipped)."""
    return _percentile_normalized(np.asarray(image, dtype=np.float64), low, high)[0]


def _percentile_normalized(
    arr: NDArray[np.float64], low: float, high: float
) -> tuple[NDArray[np.float64], float]:
    """:func:`percentile_normalize` of ``arr`` and the factor it multiplied ``arr`` by."""
    lo, hi = np.percentile(arr, [low, high])
    span = max(hi - lo, 1e-12)
    return (arr - lo) / span, 1.0 / float(span)


def fit_scale_offset(pred: ArrayLike, target: ArrayLike) -> NDArray[np.float64]:
    """``a * pred + b`` with a and b minimising the squared error to ``target``."""
    x = np.asarray(pred, dtype=np.float64)
    return _fitted(x, np.asarray(target, dtype=np.float64))[0]


def _fitted(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
    """:func:`fit_scale_offset` of ``x`` to ``y`` and its least-squares factor ``a``."""
    xc = x - x.mean()
    var = float(np.mean(xc * xc))
    # a flat prediction carries no scale information; the best fit is the target's mean
    scale = float(np.mean(xc * (y - y.mean()))) / var if var > 0 else 0.0
    return scale * xc + y.mean(), scale


def normalize_pair(
    pred: ArrayLike, gt: ArrayLike, *, mode: str = "match", low: float = 0.1, high: float = 99.9
) -> NormalizedPair:
    """Put a prediction and its ground truth on one intensity scale before comparing them.

    Parameters
    ----------
    pred, gt
        Images of equal shape.
    mode
        ``"match"`` (the default, CARE's evaluation): percentile-normalise ``gt`` to
        [0, 1], then fit ``pred`` to it with a least-squares scale and offset, so a global
        brightness or contrast difference costs nothing. ``"percentile"``: normalise each
        image by its own percentiles. ``"none"``: compare raw intensities.
    low, high
        Percentiles mapped to 0 and 1.

    Returns
    -------
    NormalizedPair
        With ``data_range`` 1 for the normalising modes and ``None`` (the ground
        truth's range) for ``"none"``.
    """
    check_choice("normalize", mode, NORMALIZE_MODES)
    if not 0 <= low < high <= 100:
        raise TilesrError(f"percentiles need 0 <= low < high <= 100, got {low} and {high}")
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape:
        raise TilesrError(f"prediction and ground truth shapes differ: {p.shape} versus {g.shape}")
    if mode == "none":
        return NormalizedPair(p, g, None)
    g_norm = percentile_normalize(g, low, high)
    normalized, scale = (
        _percentile_normalized(p, low, high) if mode == "percentile" else _fitted(p, g_norm)
    )
    return NormalizedPair(normalized, g_norm, 1.0, scale)
