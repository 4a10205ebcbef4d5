from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.model.tiny import tiny_checkpoint, tiny_config, tiny_metadata  # noqa: E402
from tilesr.denoisers.base import Denoiser  # noqa: E402
from tilesr.denoisers.torch_backend import TorchDenoiser  # noqa: E402
from tilesr.errors import TilesrError  # noqa: E402
from tilesr.model.checkpoint import Checkpoint, build_model, save_checkpoint  # noqa: E402
from tilesr.model.unet import UNet  # noqa: E402


def _arrays(n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    noisy = rng.standard_normal((n, 1, h, w), dtype=np.float32)
    cond = rng.uniform(-1, 1, (n, 1, h, w)).astype(np.float32)
    return noisy, cond, np.array([5.0, 50.0][:n], dtype=np.float32)


def test_implements_the_protocol_and_matches_the_module(tmp_path: Path) -> None:
    model = UNet(tiny_config())
    model.train()
    denoiser = TorchDenoiser(model, tiny_metadata(tiny_config()))
    assert isinstance(denoiser, Denoiser)
    assert not denoiser.model.training  # dropout off
    noisy, cond, t = _arrays(2, 8, 12)
    eps = denoiser.predict(noisy, cond, t)
    assert eps.dtype == np.float32 and eps.shape == (2, 1, 8, 12)
    with torch.no_grad():
        expected = model(torch.from_numpy(noisy), torch.from_numpy(cond), torch.from_numpy(t))
    np.testing.assert_array_equal(eps, expected.numpy())


def test_accepts_float64_and_non_contiguous_input() -> None:
    denoiser = TorchDenoiser(UNet(tiny_config()), tiny_metadata(tiny_config()))
    noisy, cond, t = _arrays(2, 8, 8)
    a = denoiser.predict(noisy, cond, t)
    transposed_view = np.swapaxes(np.swapaxes(cond, 2, 3).copy(), 2, 3)
    assert not transposed_view.flags.c_contiguous
    b = denoiser.predict(
        np.asfortranarray(noisy.astype(np.float64)), transposed_view, t.astype(np.float64)
    )
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_from_checkpoint_picks_ema_or_raw_weights(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "c.pt", ema_offset=0.05)
    noisy, cond, t = _arrays(1, 8, 8)
    ema = TorchDenoiser.from_checkpoint(tmp_path / "c.pt")
    raw = TorchDenoiser.from_checkpoint(tmp_path / "c.pt", ema=False)
    assert ema.metadata == tiny_metadata(tiny_config())
    with torch.no_grad():
        expected = build_model(ckpt, ema=True)(*(torch.from_numpy(a) for a in (noisy, cond, t)))
    np.testing.assert_allclose(ema.predict(noisy, cond, t), expected.numpy(), atol=1e-6)
    assert not np.allclose(ema.predict(noisy, cond, t), raw.predict(noisy, cond, t))


def test_metadata_size_multiple_must_suit_the_network(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "c.pt")
    bad = Checkpoint(**{**ckpt.__dict__, "metadata": {**ckpt.metadata, "size_multiple": 2}})
    save_checkpoint(tmp_path / "bad.pt", bad)
    with pytest.raises(TilesrError, match="size_multiple 2 is not a multiple of the network's 4"):
        TorchDenoiser.from_checkpoint(tmp_path / "bad.pt")


def test_unknown_device_is_refused() -> None:
    with pytest.raises(TilesrError, match="gpu0"):
        TorchDenoiser(UNet(tiny_config()), tiny_metadata(tiny_config()), device="gpu0")
