from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from tilesr.errors import TilesrError
from tilesr.simulate import simulate_large, simulate_pairs


def test_simulate_pairs_shapes_names_and_seed() -> None:
    pairs = simulate_pairs(3, size=64, scale=2, noise_level=4, seed=1)
    assert [p.name for p in pairs] == ["sim_0000", "sim_0001", "sim_0002"]
    for p in pairs:
        assert p.lr.shape == (32, 32) and p.hr.shape == (64, 64) and p.scale == 2
        assert p.hr.max() > 0 and np.all(np.isfinite(p.lr))
    # image i does not depend on how many are drawn; seeds give other images
    np.testing.assert_array_equal(
        simulate_pairs(1, size=64, seed=1, noise_level=4)[0].hr, pairs[0].hr
    )
    assert not np.array_equal(simulate_pairs(1, size=64, seed=2)[0].hr, pairs[0].hr)
    assert not np.array_equal(pairs[0].hr, pairs[1].hr)


def test_simulate_large_is_lazy_with_requested_chunks() -> None:
    lr, hr = simulate_large((96, 160), scale=2, chunk=64)
    assert isinstance(lr, da.Array) and isinstance(hr, da.Array)
    assert hr.shape == (96, 160) and lr.shape == (48, 80)
    assert hr.chunks == ((64, 32), (64, 64, 32))
    assert lr.chunks == ((32, 16), (32, 32, 16))
    assert lr.dtype == hr.dtype == np.float32


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_simulate_large_does_not_depend_on_chunking(scale: int) -> None:
    shape = (36 * scale, 42 * scale)
    lr_a, hr_a = simulate_large(shape, scale=scale, noise_level=2, seed=3, chunk=6 * scale)
    lr_b, hr_b = simulate_large(shape, scale=scale, noise_level=2, seed=3, chunk=15 * scale)
    lr_c, hr_c = simulate_large(shape, scale=scale, noise_level=2, seed=3, chunk=max(shape))
    lr_a, hr_a, lr_b, hr_b = da.compute(lr_a, hr_a, lr_b, hr_b)
    lr_c, hr_c = da.compute(lr_c, hr_c)
    assert hr_a.max() > 0
    np.testing.assert_array_equal(hr_a, hr_b)
    np.testing.assert_array_equal(hr_a, hr_c)
    np.testing.assert_array_equal(lr_a, lr_b)
    np.testing.assert_array_equal(lr_a, lr_c)


def test_simulate_large_window_is_part_of_larger_image() -> None:
    # a smaller image is the top-left corner of a larger one with the same seed
    _, small = simulate_large((40, 40), seed=5, chunk=20)
    _, big = simulate_large((80, 60), seed=5, chunk=40)
    np.testing.assert_array_equal(small.compute(), big[:40, :40].compute())


def test_simulate_large_bad_arguments() -> None:
    with pytest.raises(TilesrError, match="multiple of the scale"):
        simulate_large((65, 64), scale=2)
    with pytest.raises(TilesrError, match="chunk"):
        simulate_large((64, 64), scale=2, chunk=33)
    with pytest.raises(TilesrError, match="noise level"):
        simulate_large((64, 64), noise_level=11)
    with pytest.raises(TilesrError, match="scale"):
        simulate_pairs(1, size=64, scale=0)
