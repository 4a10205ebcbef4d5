from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from scipy import ndimage

from tilesr.cli import main


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (1000 * ndimage.gaussian_filter(rng.random((48, 48)), 2.0)).astype(np.float32)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["evaluate", *args])
    return result.exit_code, result.output


def test_prints_metrics_as_json(tmp_path: Path) -> None:
    gt = _image()
    noisy = gt + np.random.default_rng(1).normal(0, 5, gt.shape).astype(np.float32)
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    tifffile.imwrite(tmp_path / "pred.tif", noisy)
    code, out = _run(str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"))
    assert code == 0, out
    values = json.loads(out)
    assert set(values) == {"ssim", "ms_ssim", "psnr", "mae", "nrmse"}
    assert 0 < values["ssim"] < 1 and values["psnr"] > 0


def test_match_forgives_a_global_intensity_change_and_none_does_not(tmp_path: Path) -> None:
    gt = _image()
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    tifffile.imwrite(tmp_path / "pred.tif", 0.5 * gt + 20)
    code, out = _run(str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"))
    assert code == 0, out
    matched = json.loads(out)
    assert matched["ssim"] == pytest.approx(1.0)
    assert matched["psnr"] is None or matched["psnr"] > 100  # identical up to rounding
    code, out = _run(str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"), "--normalize", "none")
    assert code == 0, out
    assert json.loads(out)["mae"] > 1


def test_reads_ome_zarr(tmp_path: Path) -> None:
    from tilesr.io import write_ome_zarr

    gt = _image()
    write_ome_zarr(tmp_path / "gt.ome.zarr", gt, axes="yx")
    tifffile.imwrite(tmp_path / "pred.tif", gt)
    code, out = _run(
        str(tmp_path / "pred.tif"), str(tmp_path / "gt.ome.zarr"), "--normalize", "none"
    )
    assert code == 0, out
    values = json.loads(out)
    assert values["psnr"] is None and values["mae"] == 0.0


def test_shape_mismatch_names_both_shapes(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "gt.tif", _image())
    tifffile.imwrite(tmp_path / "pred.tif", _image()[:40])
    code, out = _run(str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"))
    assert code == 1
    assert "(40, 48)" in out and "(48, 48)" in out
    assert "Traceback" not in out


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    code, out = _run(str(tmp_path / "nope.tif"), str(tmp_path / "gt.tif"))
    assert code == 1
    assert "nope.tif" in out


def test_a_restored_output_is_compared_by_its_restoration(tmp_path: Path) -> None:
    import dask.array as da

    from tilesr.io import write_restored
    from tilesr.io.restored import OutputState

    gt = _image()
    image = da.from_array(gt + 1.0, chunks=24)
    out = tmp_path / "restored.ome.zarr"
    state = OutputState.NEW
    write_restored(out, image, image * 0.1, axes="yx", fingerprint={}, state=state)
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    code, text = _run(str(out), str(tmp_path / "gt.tif"), "--normalize", "none")
    assert code == 0, text  # the uncertainty channel is left out: the shapes match
    assert json.loads(text)["mae"] == pytest.approx(1.0)


def test_a_restored_output_with_uncertainty_reports_its_calibration(tmp_path: Path) -> None:
    # a restoration whose error is Gaussian with exactly its uncertainty, in intensity
    # units 3x the ground truth's plus an offset: the calibration is read on GT's scale
    import dask.array as da

    from tilesr.io import write_restored
    from tilesr.io.restored import OutputState

    rng = np.random.default_rng(3)
    gt = np.kron(rng.random((8, 8)), np.ones((32, 32))).astype(np.float32) * 100
    gt = ndimage.gaussian_filter(gt, 4.0)
    sigma = np.kron(rng.uniform(1.0, 4.0, (16, 16)), np.ones((16, 16))).astype(np.float32)
    pred = 3.0 * (gt + rng.normal(size=gt.shape).astype(np.float32) * sigma) + 50.0
    out = tmp_path / "restored.ome.zarr"
    image, unc = da.from_array(pred, chunks=128), da.from_array(3.0 * sigma, chunks=128)
    write_restored(out, image, unc, axes="yx", fingerprint={}, state=OutputState.NEW)
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    code, text = _run(str(out), str(tmp_path / "gt.tif"))
    assert code == 0, text
    values = json.loads(text)
    assert values["cover_1sigma"] == pytest.approx(0.6827, abs=0.02)
    assert values["cover_2sigma"] == pytest.approx(0.9545, abs=0.02)
    assert values["spearman_patch"] > 0.8
