"""Keyed noise: a pure function of (key, y, x), whatever window or strip computes it."""

from __future__ import annotations

import numpy as np

from tilesr.diffusion import noise
from tilesr.diffusion.noise import keyed_normal, keyed_normal_batch


def test_a_window_equals_the_same_part_of_a_larger_window(monkeypatch):
    monkeypatch.setattr(noise, "STRIP_PIXELS", 97)  # many strips, not aligned with anything
    big = keyed_normal([3, 1, 2, 0, 0], (-40, 17), (60, 50))
    part = keyed_normal([3, 1, 2, 0, 0], (-21, 30), (23, 31))
    assert np.array_equal(part, big[19:42, 13:44])
    monkeypatch.setattr(noise, "STRIP_PIXELS", 1 << 16)  # one strip
    assert np.array_equal(keyed_normal([3, 1, 2, 0, 0], (-40, 17), (60, 50)), big)


def test_each_key_of_a_batch_is_its_own_noise():
    keys = [[5, 1, 0, 0, s] for s in range(3)]
    batch = keyed_normal_batch(keys, (0, 0), (40, 40))
    assert batch.dtype == np.float32 and batch.shape == (3, 40, 40)
    for k, plane in zip(keys, batch, strict=True):
        assert np.array_equal(keyed_normal(k, (0, 0), (40, 40)), plane)
    assert not np.array_equal(batch[0], batch[1])


def test_standard_normal_statistics():
    x = keyed_normal([11, 0, 0, 0, 0], (0, 0), (512, 512)).astype(np.float64)
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1.0) < 0.01
    # neighbours are independent: no correlation along either axis
    for a, b in ((x[1:], x[:-1]), (x[:, 1:], x[:, :-1])):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
