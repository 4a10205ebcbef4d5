"""Outputs named .tif: a real tiled, pyramidal OME-TIFF, written atomically and resumably."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import tifffile
import zarr

from tests.reliability.conftest import (
    FAST,
    assert_one_line_error,
    run_cli,
    spawn_cli,
    write_tiff,
)
from tilesr.io import open_image
from tilesr.io.faults import KILL_AT_ENV
from tilesr.io.ome_tiff import partial_file, working_store

ARGS = ["--samples", "2", *FAST]  # an uncertainty: two channels


@pytest.fixture(scope="module")
def setup(tmp_path_factory, models):
    """An input (136 x 150: 25 blocks, a two-level pyramid) and its OME-Zarr restoration."""
    root = tmp_path_factory.mktemp("ome_tiff")
    src = root / "in.ome.tif"
    data = tifffile.imread(write_tiff(root / "plain.tif", (136, 150)))
    metadata = {
        "axes": "YX",
        "PhysicalSizeX": 0.2,
        "PhysicalSizeY": 0.2,
        "Plane": {"PositionX": [100.0], "PositionY": [50.0]},
    }
    tifffile.imwrite(src, data, ome=True, metadata=metadata)
    ref = root / "ref.ome.zarr"
    code, output = run_cli("restore", src, ref, "--model", models["spatial2"], *ARGS)
    assert code == 0, output
    return root, src, ref, models["spatial2"]


def _assert_tiff_equals_zarr(tif_path, ref):
    group = zarr.open_group(str(ref), mode="r")
    with tifffile.TiffFile(tif_path) as tif:
        assert tif.is_ome and tif.is_bigtiff
        series = tif.series[0]
        assert series.axes == "CYX"
        assert len(series.levels) == len(list(group.array_keys())) == 2
        for level, stored in zip(series.levels, ("0", "1"), strict=True):
            np.testing.assert_array_equal(level.asarray(), group[stored][...])
        page = tif.pages.first
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        assert 'Name="restored"' in tif.ome_metadata and 'Name="uncertainty"' in tif.ome_metadata


def test_a_tif_output_is_a_tiled_pyramidal_ome_tiff(setup, tmp_path):
    _, src, ref, model = setup
    out = tmp_path / "out.ome.tif"
    code, output = run_cli("restore", src, out, "--model", model, *ARGS)
    assert code == 0, output
    assert out.is_file()
    _assert_tiff_equals_zarr(out, ref)
    assert not working_store(out).exists() and not partial_file(out).exists()
    # read back as an input: the same physical placement as the OME-Zarr output
    back, zarr_back = open_image(out), open_image(ref)
    assert back.axes == zarr_back.axes == "cyx"
    assert back.pixel_sizes == pytest.approx(zarr_back.pixel_sizes)
    assert back.translation == pytest.approx(zarr_back.translation)
    assert back.translation == pytest.approx({"y": 50.0 - 0.05, "x": 100.0 - 0.05})

    code, output = run_cli("restore", src, out, "--model", model, "--resume", *ARGS)
    assert code == 0 and "already complete" in output, output
    code, output = run_cli("restore", src, out, "--model", model, *ARGS)
    assert_one_line_error(code, output, "exists", "--overwrite")
    code, output = run_cli("restore", src, out, "--model", model, "--seed", "3", "--resume", *ARGS)
    assert_one_line_error(code, output, "seed")
    code, output = run_cli(
        "restore", src, out, "--model", model, "--seed", "3", "--overwrite", *ARGS
    )
    assert code == 0, output
    with tifffile.TiffFile(out) as tif:
        assert not np.array_equal(tif.series[0].asarray(), zarr.open_array(str(ref / "0"))[...])


def test_a_file_that_is_not_a_tiff_is_never_replaced(setup, tmp_path):
    _, src, _, model = setup
    out = tmp_path / "notes.tif"
    out.write_text("my notes")
    code, output = run_cli("restore", src, out, "--model", model, "--overwrite", *ARGS)
    assert_one_line_error(code, output, "not a TIFF")
    assert out.read_text() == "my notes"


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["block", "export"])
def test_killed_while_restoring_or_exporting_then_resumed(setup, tmp_path, phase):
    _, src, ref, model = setup
    out = tmp_path / "out.ome.tif"
    proc = spawn_cli("restore", src, out, "--model", model, *ARGS, env={KILL_AT_ENV: phase})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"phase {phase} was never reached"
    assert not out.exists()  # never a partial TIFF under the output's name
    assert working_store(out).exists()
    code, output = run_cli("restore", src, out, "--model", model, *ARGS)
    assert_one_line_error(code, output, "--resume")
    code, output = run_cli("restore", src, out, "--model", model, "--resume", *ARGS)
    assert code == 0, output
    _assert_tiff_equals_zarr(out, ref)
    assert not working_store(out).exists() and not partial_file(out).exists()
