from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from tilesr.data.conditioning import conditioning
from tilesr.data.datasets import (
    ImagePair,
    PatchSampler,
    load_biosr,
    load_confocal_sted,
    load_w2s,
)
from tilesr.data.fetch import local_copies
from tilesr.data.normalize import percentile_range
from tilesr.data.resize import upsample_bicubic
from tilesr.errors import TilesrError

# complete copies of the real datasets on this machine (../shared/data, TILESR_DATA, cache)
W2S_COPIES = local_copies("w2s", base_dir=Path(__file__).parent)
STED_COPIES = local_copies("confocal_sted", base_dir=Path(__file__).parent)


def _write(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, photometric="minisblack")


def _biosr(root: Path, n: int = 2, lr: tuple[int, int] = (8, 8), scale: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        _write(root / "training_wf" / f"{i:04d}.tif", rng.random(lr, dtype=np.float32))
        hr = rng.random((lr[0] * scale, lr[1] * scale), dtype=np.float32)
        _write(root / "training_gt" / f"{i:04d}.tif", hr)
    return root


# --- ImagePair ---------------------------------------------------------------------------


def test_image_pair_converts_and_knows_its_scale() -> None:
    pair = ImagePair(np.zeros((4, 5), np.uint16), np.zeros((12, 15)), "p")
    assert pair.lr.dtype == pair.hr.dtype == np.float32
    assert pair.scale == 3


def test_image_pair_rejects_mismatched_shapes() -> None:
    with pytest.raises(TilesrError, match=r"bad.*\(9, 10\).*\(4, 5\)"):
        ImagePair(np.zeros((4, 5)), np.zeros((9, 10)), "bad")
    with pytest.raises(TilesrError, match="2D"):
        ImagePair(np.zeros((1, 4, 5)), np.zeros((8, 10)), "bad")


# --- load_biosr --------------------------------------------------------------------------


def test_load_biosr_pairs_by_name(tmp_path: Path) -> None:
    pairs = load_biosr(_biosr(tmp_path, n=3))
    assert [p.name for p in pairs] == ["0001", "0002", "0003"]
    np.testing.assert_array_equal(pairs[1].hr, tifffile.imread(tmp_path / "training_gt/0002.tif"))
    assert all(p.scale == 2 for p in pairs)


def test_load_biosr_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(TilesrError, match="not found"):
        load_biosr(tmp_path / "nope")
    (tmp_path / "training_wf").mkdir()
    (tmp_path / "training_gt").mkdir()
    with pytest.raises(TilesrError, match="no TIFF images"):
        load_biosr(tmp_path)
    with pytest.raises(TilesrError, match="test_wf"):
        load_biosr(tmp_path, "test")
    with pytest.raises(TilesrError, match="split"):
        load_biosr(tmp_path, "valid")


def test_load_biosr_unpaired_file_is_named(tmp_path: Path) -> None:
    _biosr(tmp_path)
    _write(tmp_path / "training_wf" / "0099.tif", np.zeros((8, 8), np.float32))
    with pytest.raises(TilesrError, match=r"unpaired.*0099\.tif"):
        load_biosr(tmp_path)
    (tmp_path / "training_wf" / "0099.tif").unlink()
    _write(tmp_path / "training_gt" / "0042.tif", np.zeros((16, 16), np.float32))
    with pytest.raises(TilesrError, match=r"unpaired.*training_gt.*0042\.tif"):
        load_biosr(tmp_path)


def test_load_biosr_mismatched_shapes_name_file_and_shapes(tmp_path: Path) -> None:
    _biosr(tmp_path)
    _write(tmp_path / "training_gt" / "0002.tif", np.zeros((16, 15), np.float32))
    with pytest.raises(TilesrError, match=r"0002\.tif.*\(16, 15\).*\(8, 8\)"):
        load_biosr(tmp_path)


def test_load_biosr_mixed_scales(tmp_path: Path) -> None:
    _biosr(tmp_path)
    _write(tmp_path / "training_gt" / "0002.tif", np.zeros((24, 24), np.float32))
    with pytest.raises(TilesrError, match="0002 has scale 3"):
        load_biosr(tmp_path)


def test_load_biosr_training_has_no_levels(tmp_path: Path) -> None:
    with pytest.raises(TilesrError, match="no noise levels"):
        load_biosr(_biosr(tmp_path), "train", level=2)


# --- W2S -------------------------------------------------------------------------------


@pytest.mark.skipif(not W2S_COPIES, reason="W2S not on this machine (tilesr data fetch w2s)")
def test_load_w2s_real_data() -> None:
    pairs = load_w2s(W2S_COPIES[0], fields=[1, 40], channels=(0, 2))
    assert [p.name for p in pairs] == ["001_0", "001_2", "040_0", "040_2"]
    for p in pairs:
        assert p.lr.shape == p.hr.shape == (512, 512) and p.scale == 1
        # registered pairs: noisy and clean are strongly correlated
        assert np.corrcoef(p.lr.ravel(), p.hr.ravel())[0, 1] > 0.5


def test_load_w2s_tiny_copy(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for field in (1, 2):
        for c in range(3):
            img = rng.integers(0, 255, (6, 7), dtype=np.uint8)
            _write(tmp_path / "clean" / f"{field:03d}_{c}.tif", img)
            _write(tmp_path / "noisy" / f"{field:03d}_{c}.tif", img // 2)
    pairs = load_w2s(tmp_path)
    assert [p.name for p in pairs] == [f"{f:03d}_{c}" for f in (1, 2) for c in range(3)]
    np.testing.assert_array_equal(pairs[4].lr, pairs[4].hr.astype(np.uint8) // 2)
    assert [p.name for p in load_w2s(tmp_path, fields=[2], channels=[1])] == ["002_1"]
    with pytest.raises(TilesrError, match=r"003_0\.tif"):
        load_w2s(tmp_path, fields=[3])
    with pytest.raises(TilesrError, match="not found"):
        load_w2s(tmp_path / "missing")


# --- confocal / STED --------------------------------------------------------------------


@pytest.mark.skipif(
    not STED_COPIES, reason="TA-GAN data not on this machine (tilesr data fetch confocal_sted)"
)
def test_load_confocal_sted_real_data() -> None:
    sted = STED_COPIES[0]
    pairs = load_confocal_sted(sted)
    by_name = {p.name: p for p in pairs}
    assert set(by_name) == {
        "axonal_rings_train_0",
        "axonal_rings_valid_400",
        "live_factin_train_0",
        "live_factin_valid_10",
    }
    assert by_name["axonal_rings_train_0"].lr.shape == (224, 224)
    assert by_name["live_factin_train_0"].hr.shape == (420, 846)
    raw = tifffile.imread(sted / "live_factin_valid_10.tif")
    np.testing.assert_array_equal(by_name["live_factin_valid_10"].lr, raw[0])
    np.testing.assert_array_equal(by_name["live_factin_valid_10"].hr, raw[1])


def test_load_confocal_sted_bad_files(tmp_path: Path) -> None:
    _write(tmp_path / "ok.tif", np.zeros((3, 5, 6), np.uint16))
    assert [p.name for p in load_confocal_sted([tmp_path / "ok.tif"])] == ["ok"]
    _write(tmp_path / "bad.tif", np.zeros((4, 5, 6), np.uint16))
    with pytest.raises(TilesrError, match=r"bad\.tif.*\(4, 5, 6\)"):
        load_confocal_sted(tmp_path / "bad.tif")
    with pytest.raises(TilesrError, match="not found"):
        load_confocal_sted(tmp_path / "none.tif")


# --- PatchSampler ------------------------------------------------------------------------


def _pairs(scale: int, n: int = 2, lr: int = 20) -> list[ImagePair]:
    rng = np.random.default_rng(3)
    return [
        ImagePair(
            rng.gamma(2.0, 10.0, (lr, lr + 3)),
            rng.gamma(2.0, 5.0, (lr * scale, (lr + 3) * scale)),
            f"p{i}",
        )
        for i in range(n)
    ]


def test_sampler_shapes_and_range() -> None:
    sampler = PatchSampler(_pairs(2), patch_size=16, scale=2)
    cond, target = sampler.sample(np.random.default_rng(0), 5)
    assert cond.shape == target.shape == (5, 1, 16, 16)
    assert cond.dtype == target.dtype == np.float32
    for x in (cond, target):
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert x.std() > 0.1
    assert len(sampler) == 2


def test_sampler_same_seed_same_batch() -> None:
    sampler = PatchSampler(_pairs(2), patch_size=8, scale=2)
    a = sampler.sample(np.random.default_rng(7), 3)
    b = sampler.sample(np.random.default_rng(7), 3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_sampler_augments_lr_and_hr_identically_scale_1() -> None:
    # HR == LR: any difference between cond and target means the two were cropped or
    # transformed differently
    lr = _pairs(1, n=1)[0].lr
    sampler = PatchSampler([ImagePair(lr, lr, "same")], patch_size=12, scale=1)
    cond, target = sampler.sample(np.random.default_rng(1), 64)
    np.testing.assert_array_equal(cond, target)


def test_sampler_augments_lr_and_hr_identically_scale_2() -> None:
    # HR is exactly the bicubic upsampling of a smooth LR, so cond ~ target everywhere
    y, x = np.mgrid[0:24, 0:30].astype(np.float64)
    lr = 100 + 40 * np.sin(y / 4.0) + 30 * np.cos(x / 5.0 + y / 9.0) + x
    hr = upsample_bicubic(lr, 2)
    sampler = PatchSampler(
        [ImagePair(lr, hr, "smooth")], patch_size=16, scale=2, norm_low=0, norm_high=100
    )
    rng = np.random.default_rng(2)
    cond, target = sampler.sample(rng, 32)
    np.testing.assert_allclose(cond, target, atol=0.02)
    # and the augmentation does change orientation: unaugmented patches would all
    # have the positive x gradient of the ramp
    gx = (target[..., :, -1] - target[..., :, 0]).mean(axis=(1, 2))
    assert (gx > 0).any() and (gx < 0).any()


def test_sampler_cond_equals_crop_of_the_whole_images_conditioning() -> None:
    pair = _pairs(2, n=1, lr=12)[0]
    sampler = PatchSampler([pair], patch_size=8, scale=2, augment=False)
    hr_norm = np.clip(percentile_range(pair.hr).normalize(pair.hr), -1, 1)
    # the engine's conditioning of the whole image (clipped to [-1, 1])
    whole = conditioning(pair.lr, 2, percentile_range(pair.lr))
    cond, target = sampler.sample(np.random.default_rng(5), 6)
    for c, t in zip(cond[:, 0], target[:, 0], strict=True):
        # locate the target crop (random HR values make the match unique)
        hits = [
            (i, j)
            for i in range(0, hr_norm.shape[0] - 7, 2)
            for j in range(0, hr_norm.shape[1] - 7, 2)
            if np.array_equal(hr_norm[i : i + 8, j : j + 8], t)
        ]
        assert len(hits) == 1
        i, j = hits[0]
        np.testing.assert_array_equal(c, whole[i : i + 8, j : j + 8])


def test_sampler_validation() -> None:
    with pytest.raises(TilesrError, match="at least one"):
        PatchSampler([], patch_size=8, scale=2)
    with pytest.raises(TilesrError, match="multiple of the scale"):
        PatchSampler(_pairs(2), patch_size=9, scale=2)
    with pytest.raises(TilesrError, match="patch size 64 is larger than image 'p0'"):
        PatchSampler(_pairs(2), patch_size=64, scale=2)
    with pytest.raises(TilesrError, match="'p0' has scale 2"):
        PatchSampler(_pairs(2), patch_size=8, scale=1)
    with pytest.raises(TilesrError, match="batch"):
        PatchSampler(_pairs(2), patch_size=8, scale=2).sample(np.random.default_rng(0), 0)
