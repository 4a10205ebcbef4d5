"""The imaging forward model: PSF blur, area downsampling, background and camera noise.

HR (the target, SIM-like) is the structure density blurred by a narrow Gaussian PSF
(``hr_sigma`` = 1 HR pixel), noise-free. LR (the input, widefield-like) is the density
blurred by a wide PSF (``lr_sigma`` = 2.6 HR pixels), averaged over ``scale x scale``
blocks, scaled to photons, plus a smooth background, Poisson shot noise, Gaussian
read noise and a camera offset.

The HR target keeps ``target_background`` of that background (default 0: a
background-free, SIM-like target); 1 keeps all of it, as in a frame average of the same
microscope (W2S). (Training the bundled recipe with 1 changed nothing on the real W2S
fields: docs/model-card.md.)

Noise levels follow BioSR's convention, 1 = fewest photons = noisiest, 9 = cleanest.
The photon count of a level is the expected signal, in photo-electrons, at the peak
of a filament of unit brightness in the LR image (for :func:`degrade`: at the
99.9th percentile of the blurred, downsampled real image):

=====  ====  ====  ====  ====  ====  ====  ====  ====  ====
level     1     2     3     4     5     6     7     8     9
=====  ====  ====  ====  ====  ====  ====  ====  ====  ====
peak      4     8    16    32    64   125   250   500  1000
=====  ====  ====  ====  ====  ====  ====  ====  ====  ====

Background is ``background`` (15 %) of the peak, modulated smoothly by +-50 %; read
noise is 1.5 e- rms and the offset 100 counts (gain 1 count per e-), as for a
typical sCMOS camera. LR values are float32 counts; HR values are float32 with a
unit-brightness filament peaking at ``hr_unit`` (1000).

Shot noise is drawn by inverting the Poisson CDF at a uniform number made from a hash
of the global pixel coordinates (:func:`tilesr.diffusion.noise.keyed_normal` pushed
through the normal CDF), so any window of an image gets the same noise as the whole
image: exact Poisson at low counts, where a Gaussian approximation would be wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage, special, stats

from tilesr.data.datasets import ImagePair
from tilesr.diffusion.noise import keyed_normal
from tilesr.errors import TilesrError
from tilesr.simulate.structures import StructureParams, render_density

#: nominal pixel size of the simulated HR grid (micrometres), BioSR's SIM pixel
HR_PIXEL_UM = 0.0313

#: expected peak photo-electrons of a unit filament in LR, per noise level 1..9
PHOTONS: dict[int, float] = {
    1: 4.0,
    2: 8.0,
    3: 16.0,
    4: 32.0,
    5: 64.0,
    6: 125.0,
    7: 250.0,
    8: 500.0,
    9: 1000.0,
}

_TRUNCATE = 4.0
# above this mean the Poisson quantile is taken from a Cornish-Fisher expansion: its
# error is far below one count there, and the exact inverse CDF is ~20x slower
_EXACT_POISSON_BELOW = 200.0
_BACKGROUND_PERIOD = 700.0  # HR pixels; smooth compared with any chunk halo


@dataclass(frozen=True)
class ForwardModel:
    """Optics and camera of the simulated microscope (lengths in HR pixels)."""

    hr_sigma: float = 1.0
    lr_sigma: float = 2.6
    hr_unit: float = 1000.0
    background: float = 0.15
    read_noise: float = 1.5
    offset: float = 100.0
    target_background: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.hr_sigma < self.lr_sigma:
            raise TilesrError(
                f"PSF widths need 0 < hr_sigma < lr_sigma, got {self.hr_sigma} and {self.lr_sigma}"
            )
        if self.background < 0 or self.read_noise < 0:
            raise TilesrError(
                f"background and read noise must be >= 0, got {self.background}, {self.read_noise}"
            )
        if not 0 <= self.target_background <= 1:
            raise TilesrError(f"target_background must be in [0, 1], got {self.target_background}")

    @property
    def halo(self) -> int:
        """HR pixels of density needed around a window to blur it exactly."""
        return int(_TRUNCATE * self.lr_sigma + 0.5) + 1


def check_level(noise_level: int) -> float:
    """Photon count of ``noise_level``; TilesrError if it is not 1..9."""
    if isinstance(noise_level, bool) or int(noise_level) != noise_level:
        raise TilesrError(f"noise level must be an integer 1..9, got {noise_level!r}")
    if int(noise_level) not in PHOTONS:
        raise TilesrError(f"noise level must be 1..9 (1 = noisiest), got {noise_level}")
    return PHOTONS[int(noise_level)]


def check_scale(scale: int) -> int:
    """``scale`` as an int; TilesrError unless it is a positive integer."""
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise TilesrError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


def poisson_quantile(u: NDArray[np.float64], lam: NDArray[np.float64]) -> NDArray[np.float64]:
    """Inverse Poisson CDF: the smallest k with P(K <= k; lam) >= u (elementwise)."""
    lam = np.maximum(lam, 0.0)
    out = np.empty(np.broadcast(u, lam).shape, dtype=np.float64)
    u, lam = np.broadcast_to(u, out.shape), np.broadcast_to(lam, out.shape)
    low = lam < _EXACT_POISSON_BELOW
    out[low] = stats.poisson.ppf(u[low], lam[low])
    # Cornish-Fisher: quantile ~ lam + z sqrt(lam) + (z^2 - 1) / 6, rounded
    z = special.ndtri(u[~low])
    high = lam[~low]
    out[~low] = np.floor(high + z * np.sqrt(high) + (z * z - 1.0) / 6.0 + 0.5)
    return np.maximum(out, 0.0)


def camera_noise(
    expected: NDArray[np.float64],
    *,
    key: Sequence[int],
    origin: tuple[int, int],
    model: ForwardModel,
) -> NDArray[np.float32]:
    """Counts of a camera whose pixel ``origin + (i, j)`` expects ``expected[i, j]`` e-."""
    shape = (int(expected.shape[0]), int(expected.shape[1]))
    u = special.ndtr(keyed_normal([*key, 0], origin, shape).astype(np.float64))
    counts = poisson_quantile(u, expected)
    read = keyed_normal([*key, 1], origin, shape).astype(np.float64) * model.read_noise
    return (counts + read + model.offset).astype(np.float32)


def area_downsample(image: NDArray[np.float64], scale: int) -> NDArray[np.float64]:
    """Mean over ``scale x scale`` blocks, summed in a fixed order (exact under tiling)."""
    if scale == 1:
        return image
    acc = np.zeros((image.shape[0] // scale, image.shape[1] // scale))
    for i in range(scale):
        for j in range(scale):
            acc += image[i::scale, j::scale]
    return acc / (scale * scale)


def _background(
    field: Sequence[int], origin: tuple[int, int], shape: tuple[int, int], scale: int
) -> NDArray[np.float64]:
    """Smooth relative background (mean 1, +-50 %) at LR pixel centres, keyed by field."""
    rng = np.random.default_rng([*(int(k) & 0xFFFFFFFF for k in field), 0xB6])
    phase_y, phase_x = rng.uniform(0.0, 2.0 * np.pi, 2)
    y = (np.arange(origin[0], origin[0] + shape[0]) + 0.5) * scale
    x = (np.arange(origin[1], origin[1] + shape[1]) + 0.5) * scale
    wy = np.sin(2.0 * np.pi * y / _BACKGROUND_PERIOD + phase_y)
    wx = np.sin(2.0 * np.pi * x / _BACKGROUND_PERIOD + phase_x)
    return 1.0 + 0.5 * wy[:, None] * wx[None, :]


def _blurred_density(
    field: Sequence[int],
    origin: tuple[int, int],
    shape: tuple[int, int],
    sigmas: Sequence[float],
    model: ForwardModel,
    params: StructureParams | None,
) -> list[NDArray[np.float64]]:
    """The window's density blurred by each sigma, computed on a halo and cropped."""
    h = model.halo
    padded = render_density(
        field, (origin[0] - h, origin[1] - h), (shape[0] + 2 * h, shape[1] + 2 * h), params
    )
    return [ndimage.gaussian_filter(padded, s, truncate=_TRUNCATE)[h:-h, h:-h] for s in sigmas]


def render_hr(
    field: Sequence[int],
    origin: tuple[int, int],
    shape: tuple[int, int],
    *,
    model: ForwardModel | None = None,
    params: StructureParams | None = None,
) -> NDArray[np.float32]:
    """Clean HR (SIM-like) window ``origin + [0, shape)`` of a field, float32."""
    m = ForwardModel() if model is None else model
    (blur,) = _blurred_density(field, origin, shape, [m.hr_sigma], m, params)
    return _hr_from_blur(blur, field, origin, m)


def _hr_from_blur(
    blur_hr: NDArray[np.float64],
    field: Sequence[int],
    origin: tuple[int, int],
    model: ForwardModel,
) -> NDArray[np.float32]:
    """HR intensities (a unit filament peaks at ``hr_unit``) plus the kept share of the
    input's background at HR pixel centres, as the same light per area: HR and LR turn
    a density into intensity by factors proportional to ``hr_unit * hr_sigma`` and
    ``photons * lr_sigma``, so the input's ``background * photons`` is
    ``background * hr_unit * hr_sigma / lr_sigma`` here."""
    hr = blur_hr * (model.hr_unit * np.sqrt(2.0 * np.pi) * model.hr_sigma)
    if model.target_background > 0:
        shape = (int(hr.shape[0]), int(hr.shape[1]))
        flux = model.background * model.hr_unit * model.hr_sigma / model.lr_sigma
        hr = hr + model.target_background * flux * _background(field, origin, shape, 1)
    return hr.astype(np.float32)


def _lr_from_blur(
    blur_hr: NDArray[np.float64],
    field: Sequence[int],
    origin_lr: tuple[int, int],
    *,
    scale: int,
    noise_level: int,
    noise_key: Sequence[int],
    model: ForwardModel,
) -> NDArray[np.float32]:
    photons = check_level(noise_level)
    signal = area_downsample(blur_hr, scale) * (photons * np.sqrt(2.0 * np.pi) * model.lr_sigma)
    shape = (int(signal.shape[0]), int(signal.shape[1]))
    background = model.background * photons * _background(field, origin_lr, shape, scale)
    return camera_noise(signal + background, key=noise_key, origin=origin_lr, model=model)


def render_lr(
    field: Sequence[int],
    origin_lr: tuple[int, int],
    shape_lr: tuple[int, int],
    *,
    scale: int,
    noise_level: int,
    noise_key: Sequence[int],
    model: ForwardModel | None = None,
    params: StructureParams | None = None,
) -> NDArray[np.float32]:
    """Noisy LR (widefield-like) window of a field, in LR pixel coordinates, float32."""
    m = ForwardModel() if model is None else model
    origin = (origin_lr[0] * scale, origin_lr[1] * scale)
    shape = (shape_lr[0] * scale, shape_lr[1] * scale)
    (blur,) = _blurred_density(field, origin, shape, [m.lr_sigma], m, params)
    return _lr_from_blur(
        blur, field, origin_lr, scale=scale, noise_level=noise_level, noise_key=noise_key, model=m
    )


def render_pair(
    field: Sequence[int],
    size: int,
    *,
    scale: int,
    noise_levels: Sequence[int],
    noise_key: Sequence[int],
    model: ForwardModel | None = None,
    params: StructureParams | None = None,
) -> tuple[NDArray[np.float32], list[NDArray[np.float32]]]:
    """Clean HR ``(size, size)`` and one noisy LR per level, from one density render."""
    m = ForwardModel() if model is None else model
    hr_blur, lr_blur = _blurred_density(
        field, (0, 0), (size, size), [m.hr_sigma, m.lr_sigma], m, params
    )
    hr = _hr_from_blur(hr_blur, field, (0, 0), m)
    lrs = [
        _lr_from_blur(
            lr_blur, field, (0, 0), scale=scale, noise_level=lv, noise_key=[*noise_key, lv], model=m
        )
        for lv in noise_levels
    ]
    return hr, lrs


def degrade(
    hr_image: ArrayLike,
    *,
    scale: int,
    noise_level: int,
    seed: int,
    name: str = "degraded",
    model: ForwardModel | None = None,
) -> ImagePair:
    """Apply the LR forward model to a real high-resolution image.

    The HR image already carries its own PSF, so it is blurred only by the difference
    ``sqrt(lr_sigma**2 - hr_sigma**2)``, then averaged over ``scale x scale`` blocks,
    scaled so that its 99.9th percentile gets the level's photon count, and noised.

    Parameters
    ----------
    hr_image
        2D image (e.g. a SIM reconstruction). Negative values (reconstruction
        artefacts) are clipped to 0; rows/columns beyond a multiple of ``scale`` are
        cropped.
    scale
        Integer downsampling factor.
    noise_level
        1 (noisiest) .. 9 (cleanest), see the module table.
    seed
        Noise seed.
    name
        Name of the returned pair.
    model
        Optics and camera; defaults to :class:`ForwardModel()`.

    Returns
    -------
    ImagePair
        ``lr`` noisy counts (float32), ``hr`` the clipped, cropped input (float32), plus
        ``model.target_background`` of the uniform background.
    """
    m = ForwardModel() if model is None else model
    s = check_scale(scale)
    photons = check_level(noise_level)
    img = np.asarray(hr_image)
    if img.ndim != 2:
        squeezed = np.squeeze(img)
        if squeezed.ndim != 2:
            raise TilesrError(f"degrade needs a 2D image, got shape {img.shape}")
        img = squeezed
    if img.shape[0] < s or img.shape[1] < s:
        raise TilesrError(f"image of shape {img.shape} is smaller than the scale {s}")
    hr = np.clip(np.asarray(img, dtype=np.float64), 0.0, None)
    if not np.all(np.isfinite(hr)):
        raise TilesrError("image holds NaN or infinite values")
    hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
    extra = float(np.sqrt(m.lr_sigma**2 - m.hr_sigma**2))
    lr_clean = area_downsample(ndimage.gaussian_filter(hr, extra, truncate=_TRUNCATE), s)
    top = float(np.percentile(lr_clean, 99.9))
    if top <= 0:
        raise TilesrError("image is empty (no positive values), nothing to degrade")
    expected = lr_clean * (photons / top) + m.background * photons
    lr = camera_noise(expected, key=[int(seed), 0xDE, int(noise_level)], origin=(0, 0), model=m)
    # the background here is uniform: m.background of the image's top, in its own units
    hr = hr + m.target_background * m.background * top
    return ImagePair(lr=lr, hr=hr.astype(np.float32), name=name)
