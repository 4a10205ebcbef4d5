"""``tilesr simulate`` through click's test runner (kept here, next to the simulator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from tilesr.cli import main
from tilesr.data.datasets import load_biosr
from tilesr.simulate import degrade, simulate_large


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["simulate", *args])
    return result.exit_code, result.output


def test_help_shows_examples() -> None:
    code, out = _run("--help")
    assert code == 0
    assert "tilesr simulate slide.ome.zarr --large 8192" in out
    assert "--from-image" in out


def test_dataset_mode_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    args = ["--pairs", "2", "--test", "1", "--size", "16", "--scale", "2", "--levels", "1,4-5"]
    code, text = _run(str(out), *args)
    assert code == 0, text
    assert len(load_biosr(out)) == 2
    levels = sorted(p.name for p in (out / "test_wf").iterdir())
    assert levels == ["level_01", "level_04", "level_05"]
    before = tifffile.imread(out / "training_wf" / "0001.tif")

    code, text = _run(str(out), *args)
    assert code == 1
    assert "not empty" in text and "Traceback" not in text
    np.testing.assert_array_equal(tifffile.imread(out / "training_wf" / "0001.tif"), before)

    code, text = _run(str(out), *args, "--seed", "1", "--overwrite")
    assert code == 0, text
    assert not np.array_equal(tifffile.imread(out / "training_wf" / "0001.tif"), before)


def test_bad_levels_and_mode_mix(tmp_path: Path) -> None:
    code, text = _run(str(tmp_path / "a"), "--levels", "x")
    assert code == 1 and "levels" in text
    code, text = _run(str(tmp_path / "b"), "--levels", "0-3")
    assert code == 1 and "noise level" in text
    code, text = _run(str(tmp_path / "c.ome.zarr"), "--large", "64", "--from-image", "x.tif")
    assert code == 1 and "not both" in text


def test_from_image(tmp_path: Path) -> None:
    hr = np.random.default_rng(0).gamma(2.0, 10.0, (33, 40)).astype(np.float32)
    src = tmp_path / "hr.tif"
    tifffile.imwrite(src, hr)
    out = tmp_path / "pair.tif"
    code, text = _run(str(out), "--from-image", str(src), "--scale", "2", "--noise-level", "3")
    assert code == 0, text
    lr, gt = tifffile.imread(out), tifffile.imread(tmp_path / "pair_gt.tif")
    expected = degrade(hr, scale=2, noise_level=3, seed=0)
    np.testing.assert_array_equal(lr, expected.lr)
    np.testing.assert_array_equal(gt, expected.hr)

    code, text = _run(str(out), "--from-image", str(src))
    assert code == 1 and "exists" in text
    code, text = _run(str(tmp_path / "x.tif"), "--from-image", str(tmp_path / "missing.tif"))
    assert code == 1 and "missing.tif" in text
    code, text = _run(str(tmp_path / "x.zarr"), "--from-image", str(src))
    assert code == 1 and ".tif" in text


def test_large_writes_lr_and_ground_truth(tmp_path: Path) -> None:
    io = pytest.importorskip("tilesr.io")
    out = tmp_path / "slide.ome.zarr"
    args = [
        "--large",
        "48x64",
        "--scale",
        "2",
        "--chunk",
        "32",
        "--noise-level",
        "2",
        "--seed",
        "4",
    ]
    code, text = _run(str(out), *args)
    assert code == 0, text
    lr_ref, hr_ref = simulate_large((48, 64), scale=2, noise_level=2, seed=4, chunk=32)
    lr = io.open_image(out)
    hr = io.open_image(tmp_path / "slide_gt.ome.zarr")
    assert lr.axes == hr.axes == "yx"
    np.testing.assert_array_equal(np.asarray(lr.data), lr_ref.compute())
    np.testing.assert_array_equal(np.asarray(hr.data), hr_ref.compute())
    assert lr.pixel_sizes["x"] == pytest.approx(2 * hr.pixel_sizes["x"])

    code, text = _run(str(out), *args)
    assert code == 1 and "exists" in text
    code, text = _run(str(tmp_path / "slide.tif"), "--large", "64")
    assert code == 1 and ".ome.zarr" in text
    code, text = _run(str(tmp_path / "o.ome.zarr"), "--large", "63", "--scale", "2")
    assert code == 1 and "multiple of the scale" in text
