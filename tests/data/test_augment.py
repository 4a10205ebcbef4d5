from __future__ import annotations

import numpy as np

from tilesr.data.augment import Dihedral, augment_pair


def test_eight_distinct_symmetries() -> None:
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    outs = {
        Dihedral(r, f).apply(img).tobytes() + bytes(Dihedral(r, f).apply(img).shape)
        for r in range(4)
        for f in (False, True)
    }
    assert len(outs) == 8


def test_apply_on_leading_axes_and_is_a_symmetry() -> None:
    img = np.random.default_rng(0).normal(size=(2, 1, 5, 5))
    out = Dihedral(3, True).apply(img)
    assert out.shape == img.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(img.ravel()))
    np.testing.assert_array_equal(out[1, 0], Dihedral(3, True).apply(img[1, 0]))


def test_random_covers_all_and_pair_gets_the_same_transform() -> None:
    rng = np.random.default_rng(1)
    seen = {Dihedral.random(rng) for _ in range(200)}
    assert len(seen) == 8
    a = np.random.default_rng(2).normal(size=(6, 6))
    for _ in range(20):
        x, y = augment_pair(a, a.copy(), rng)
        np.testing.assert_array_equal(x, y)
