"""Random fluorescent structures defined on an infinite global grid.

A *field* is an endless plane of structures: worm-like filaments (microtubule-like
curves with a persistence length), small Gaussian spots and ring-shaped vesicles.
The plane is cut into square cells of ``StructureParams.cell`` HR pixels; the
structures that *start* in a cell are drawn from a generator seeded by
``(field key, cell row, cell column)`` alone. Any window of the field is rendered by
regenerating the cells whose structures can reach it, so a window's pixels do not
depend on where the window lies or how big it is: an 8192 x 8192 image rendered chunk
by chunk equals the same image rendered whole, bit for bit, without seams.

Rendering is anti-aliased without a supersampled grid: filaments and rings are
sampled as points every ``step`` (a quarter) pixel and splatted bilinearly, spots are
evaluated analytically on the pixel grid. The result is a *density* (fluorophores per
pixel, float64) that the forward model then blurs with a PSF.

Bit-exactness across windows rests on three choices: sub-pixel positions and weights
are computed in global coordinates (never relative to the window), every pixel adds
its contributions in one global order (cells row-major, then points in order), and
spot values are evaluated at global integer pixel coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from tilesr.errors import TilesrError

_MASK32 = (1 << 32) - 1


@dataclass(frozen=True)
class StructureParams:
    """How many structures, of what size and brightness, a field holds.

    Lengths are in HR pixels; a filament of brightness 1 has one unit of fluorophore
    per pixel of length (the forward model maps that unit to photons).
    """

    cell: int = 128
    filaments_per_cell: float = 5.0
    filament_length: tuple[float, float] = (40.0, 240.0)
    persistence_length: tuple[float, float] = (100.0, 500.0)
    spots_per_cell: float = 3.0
    spot_sigma: tuple[float, float] = (0.5, 2.0)
    rings_per_cell: float = 1.0
    ring_radius: tuple[float, float] = (2.0, 6.0)
    brightness_sigma: float = 0.4
    step: float = 0.25

    def __post_init__(self) -> None:
        if self.cell < 8:
            raise TilesrError(f"structure cell must be at least 8 pixels, got {self.cell}")
        if not 0 < self.step <= 1:
            raise TilesrError(f"point step must be in (0, 1] pixels, got {self.step}")
        for name in ("filament_length", "persistence_length", "spot_sigma", "ring_radius"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise TilesrError(f"{name} needs 0 < low <= high, got {lo} and {hi}")

    @property
    def reach(self) -> int:
        """How far (pixels) a structure can extend beyond the cell it starts in."""
        spot = 4.0 * self.spot_sigma[1] + 2.0
        return int(np.ceil(max(self.filament_length[1], self.ring_radius[1] + 2.0, spot)))


@dataclass(frozen=True)
class CellStructures:
    """The structures starting in one cell, in global HR pixel coordinates."""

    # sub-pixel points (filaments and rings): floor of the position, fraction, weight
    point_iy: NDArray[np.int64]
    point_ix: NDArray[np.int64]
    point_fy: NDArray[np.float64]
    point_fx: NDArray[np.float64]
    point_w: NDArray[np.float64]
    # spots: centre (y, x), sigma, total fluorophore mass; shape (n, 4)
    spots: NDArray[np.float64]


def _brightness(rng: np.random.Generator, sigma: float, n: int) -> NDArray[np.float64]:
    # lognormal with mean 1, so `brightness_sigma` only changes the spread
    return rng.lognormal(-0.5 * sigma**2, sigma, n)


def _filament_points(
    rng: np.random.Generator, origin: tuple[int, int], p: StructureParams
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Points along worm-like chains: the heading angle does a Gaussian random walk."""
    n = rng.poisson(p.filaments_per_cell)
    ys, xs, ws = [], [], []
    for b in _brightness(rng, p.brightness_sigma, n):
        length = rng.uniform(*p.filament_length)
        lp = rng.uniform(*p.persistence_length)
        k = max(int(length / p.step), 2)
        # tangent correlation <cos(theta(s) - theta(0))> = exp(-s / Lp), the definition of
        # the persistence length, needs a heading-angle diffusion of variance 2 ds / Lp
        turns = rng.normal(0.0, np.sqrt(2.0 * p.step / lp), k)
        theta = rng.uniform(0.0, 2.0 * np.pi) + np.cumsum(turns)
        y0 = origin[0] + rng.uniform(0.0, p.cell)
        x0 = origin[1] + rng.uniform(0.0, p.cell)
        ys.append(y0 + p.step * np.cumsum(np.sin(theta)))
        xs.append(x0 + p.step * np.cumsum(np.cos(theta)))
        ws.append(np.full(k, b * p.step))
    return _cat(ys), _cat(xs), _cat(ws)


def _ring_points(
    rng: np.random.Generator, origin: tuple[int, int], p: StructureParams
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Points on circles (vesicle membranes), same line density as a filament."""
    n = rng.poisson(p.rings_per_cell)
    ys, xs, ws = [], [], []
    for b in _brightness(rng, p.brightness_sigma, n):
        r = rng.uniform(*p.ring_radius)
        k = max(int(2.0 * np.pi * r / p.step), 8)
        phi = rng.uniform(0.0, 2.0 * np.pi) + np.linspace(0.0, 2.0 * np.pi, k, endpoint=False)
        cy = origin[0] + rng.uniform(0.0, p.cell)
        cx = origin[1] + rng.uniform(0.0, p.cell)
        ys.append(cy + r * np.sin(phi))
        xs.append(cx + r * np.cos(phi))
        ws.append(np.full(k, b * 2.0 * np.pi * r / k))
    return _cat(ys), _cat(xs), _cat(ws)


def _cat(parts: list[NDArray[np.float64]]) -> NDArray[np.float64]:
    return np.concatenate(parts) if parts else np.zeros(0)


@lru_cache(maxsize=4096)
def cell_structures(
    field: tuple[int, ...], cy: int, cx: int, params: StructureParams
) -> CellStructures:
    """The structures of cell ``(cy, cx)`` of the field keyed by ``field`` (cached)."""
    rng = np.random.default_rng([*(int(k) & _MASK32 for k in field), cy & _MASK32, cx & _MASK32])
    origin = (cy * params.cell, cx * params.cell)
    fy, fx, fw = _filament_points(rng, origin, params)
    ry, rx, rw = _ring_points(rng, origin, params)
    py, px, pw = np.concatenate([fy, ry]), np.concatenate([fx, rx]), np.concatenate([fw, rw])
    iy, ix = np.floor(py), np.floor(px)

    n_spots = rng.poisson(params.spots_per_cell)
    sigma = rng.uniform(*params.spot_sigma, n_spots)
    # a spot of mass 2.5 (s^2 + 1) peaks about as high as a unit filament under a
    # 1-pixel PSF, so spots and filaments share one brightness scale
    mass = _brightness(rng, params.brightness_sigma, n_spots) * 2.5 * (sigma**2 + 1.0)
    spots = np.stack(
        [
            origin[0] + rng.uniform(0.0, params.cell, n_spots),
            origin[1] + rng.uniform(0.0, params.cell, n_spots),
            sigma,
            mass,
        ],
        axis=1,
    )
    return CellStructures(
        iy.astype(np.int64), ix.astype(np.int64), py - iy, px - ix, pw, spots.reshape(-1, 4)
    )


def _splat(
    out: NDArray[np.float64], cells: Sequence[CellStructures], origin: tuple[int, int]
) -> None:
    """Bilinear splat of all points into ``out`` (window at ``origin``), in global order."""
    h, w = out.shape
    iy = np.concatenate([c.point_iy for c in cells]) - origin[0]
    ix = np.concatenate([c.point_ix for c in cells]) - origin[1]
    fy = np.concatenate([c.point_fy for c in cells])
    fx = np.concatenate([c.point_fx for c in cells])
    wt = np.concatenate([c.point_w for c in cells])
    flat = out.reshape(-1)
    corners = (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    )
    for oy, ox, frac in corners:
        yy, xx = iy + oy, ix + ox
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        # bincount adds the points of each pixel in array order: the same order in
        # every window that contains the pixel
        flat += np.bincount(
            yy[inside] * w + xx[inside], weights=(wt * frac)[inside], minlength=h * w
        )


def _stamp_spots(
    out: NDArray[np.float64], cells: Sequence[CellStructures], origin: tuple[int, int]
) -> None:
    """Add normalised Gaussian spots, evaluated at global integer pixel coordinates."""
    h, w = out.shape
    for cell in cells:
        for cy, cx, s, mass in cell.spots:
            r = int(np.ceil(4.0 * s))
            iy, ix = int(np.floor(cy)), int(np.floor(cx))
            y_lo, x_lo = max(iy - r, origin[0]), max(ix - r, origin[1])
            y_hi, x_hi = min(iy + r + 2, origin[0] + h), min(ix + r + 2, origin[1] + w)
            if y_lo >= y_hi or x_lo >= x_hi:
                continue
            gy = np.exp(-0.5 * ((np.arange(y_lo, y_hi) - cy) / s) ** 2)
            gx = np.exp(-0.5 * ((np.arange(x_lo, x_hi) - cx) / s) ** 2)
            amp = mass / (2.0 * np.pi * s * s)
            out[y_lo - origin[0] : y_hi - origin[0], x_lo - origin[1] : x_hi - origin[1]] += (
                amp * gy[:, None] * gx[None, :]
            )


def render_density(
    field: Sequence[int],
    origin: tuple[int, int],
    shape: tuple[int, int],
    params: StructureParams | None = None,
) -> NDArray[np.float64]:
    """Fluorophore density of the window ``origin + [0, shape)`` of a field.

    Parameters
    ----------
    field
        Integers that key the field (e.g. ``(seed, image index)``); equal keys give
        equal fields.
    origin, shape
        The window in global HR pixel coordinates (origin may be negative).
    params
        Structure statistics; defaults to :class:`StructureParams()`.

    Returns
    -------
    numpy.ndarray
        float64 array of ``shape``, non-negative.
    """
    p = StructureParams() if params is None else params
    if shape[0] < 1 or shape[1] < 1:
        raise TilesrError(f"window shape must be positive, got {shape}")
    key = tuple(int(k) for k in field)
    reach = p.reach + 1
    rows = range((origin[0] - reach) // p.cell, (origin[0] + shape[0] + reach) // p.cell + 1)
    cols = range((origin[1] - reach) // p.cell, (origin[1] + shape[1] + reach) // p.cell + 1)
    cells = [cell_structures(key, cy, cx, p) for cy in rows for cx in cols]
    out = np.zeros(shape, dtype=np.float64)
    _splat(out, cells, origin)
    _stamp_spots(out, cells, origin)
    return out
