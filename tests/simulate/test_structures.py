from __future__ import annotations

import numpy as np
import pytest

from tilesr.errors import TilesrError
from tilesr.simulate.structures import (
    StructureParams,
    _filament_points,
    _splat,
    cell_structures,
    render_density,
)

FIELD = (7, 1)


def test_density_non_negative_and_non_empty() -> None:
    d = render_density(FIELD, (0, 0), (128, 128))
    assert d.shape == (128, 128)
    assert d.dtype == np.float64
    assert np.all(np.isfinite(d))
    assert d.min() >= 0.0
    # filaments and spots cover a visible fraction of the image, but not all of it
    covered = (d > 0.05).mean()
    assert 0.01 < covered < 0.9


def test_window_equals_slice_of_larger_render() -> None:
    whole = render_density(FIELD, (-40, -24), (150, 170))
    part = render_density(FIELD, (13, 5), (61, 77))
    np.testing.assert_array_equal(part, whole[53:114, 29:106])


def test_same_key_same_field_other_key_other_field() -> None:
    a = render_density(FIELD, (0, 0), (64, 64))
    b = render_density(FIELD, (0, 0), (64, 64))
    c = render_density((8, 1), (0, 0), (64, 64))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_splat_conserves_mass() -> None:
    params = StructureParams(spots_per_cell=0, rings_per_cell=2)
    cell = cell_structures((3,), 0, 0, params)
    reach = params.reach + 2
    out = np.zeros((params.cell + 2 * reach, params.cell + 2 * reach))
    _splat(out, [cell], (-reach, -reach))
    assert cell.point_w.size > 0
    assert out.sum() == pytest.approx(cell.point_w.sum(), rel=1e-12)


def test_worm_like_chain_tangent_correlation() -> None:
    # <cos(theta(s) - theta(0))> = exp(-s / Lp) for a 2D worm-like chain
    lp, length = 50.0, 100.0
    params = StructureParams(
        filaments_per_cell=200, filament_length=(length, length), persistence_length=(lp, lp)
    )
    ys, xs, _ = _filament_points(np.random.default_rng(0), (0, 0), params)
    k = int(length / params.step)
    ys, xs = ys.reshape(-1, k), xs.reshape(-1, k)
    steps = np.hypot(np.diff(ys, axis=1), np.diff(xs, axis=1))
    np.testing.assert_allclose(steps, params.step, rtol=1e-9)
    theta = np.arctan2(np.diff(ys, axis=1), np.diff(xs, axis=1))
    lag = int(lp / params.step)
    corr = np.cos(theta[:, lag:] - theta[:, :-lag]).mean()
    assert corr == pytest.approx(np.exp(-1.0), abs=0.06)


def test_bad_params_are_user_errors() -> None:
    with pytest.raises(TilesrError, match="filament_length"):
        StructureParams(filament_length=(10.0, 5.0))
    with pytest.raises(TilesrError, match="cell"):
        StructureParams(cell=2)
    with pytest.raises(TilesrError, match="window shape"):
        render_density(FIELD, (0, 0), (0, 5))
