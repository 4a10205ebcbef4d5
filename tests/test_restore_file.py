"""restore_file: file in, resumable OME-Zarr out, equal to the engine's own result."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from tilesr.engine.restore import restore
from tilesr.errors import TilesrError
from tilesr.io import open_image, open_restored, write_ome_zarr
from tilesr.io import restored as restored_mod
from tilesr.options import RestoreOptions
from tilesr.restore_file import restore_file

FAST = RestoreOptions(steps=3, sampler="ddim", block_size=48)
QUIET = {"progress": False}


@pytest.fixture
def stack():
    rng = np.random.default_rng(11)
    return (rng.random((2, 30, 41)) * 3000 + 100).astype(np.uint16)


@pytest.fixture
def tiff(tmp_path, stack):
    path = tmp_path / "in.ome.tif"
    tifffile.imwrite(
        path,
        stack,
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 1.0},
    )
    return path


def _engine(stack, model, **kwargs):
    """The engine's own answer on the same pixels, computed in memory."""
    result = restore(da.from_array(stack), str(model), replace(FAST, axes="zyx", **kwargs))
    unc = result.uncertainty.compute() if result.uncertainty is not None else None
    return result.image.compute(), unc


def test_tiff_to_ome_zarr_matches_engine(tmp_path, tiff, stack, models):
    out = tmp_path / "out.zarr"
    options = replace(FAST, samples=2, seed=4)
    report = restore_file(tiff, out, options, model=models["analytic2"], **QUIET)
    assert report.output_shape == (2, 2, 60, 82)  # c: restoration, uncertainty
    assert report.axes == "czyx"
    assert report.status == "written"
    assert report.chunks_written == report.chunks_total == 2 * 2 * 2

    image, unc = _engine(stack, models["analytic2"], samples=2, seed=4, uncertainty=True)
    group = zarr.open_group(out, mode="r")
    back = open_restored(out)
    np.testing.assert_array_equal(np.asarray(back.image), image)
    np.testing.assert_array_equal(np.asarray(back.uncertainty), unc)
    assert group["0"].dtype == np.float32

    restored = open_image(out)
    assert restored.axes == "czyx"
    # the output grid is finer by the model's scale in y and x only
    assert restored.pixel_sizes == pytest.approx({"z": 1.0, "y": 0.1, "x": 0.1})
    assert "c: restored 0, uncertainty 1" in report.summary()
    meta = group.attrs["tilesr"]
    assert meta["status"] == "complete"
    assert meta["settings"]["seed"] == 4 and meta["settings"]["samples"] == 2
    # the hash of the .onnx file, named so (the test model's metadata records no weights hash)
    digest = hashlib.sha256(Path(models["analytic2"]).read_bytes()).hexdigest()
    assert meta["model_file_sha256"] == meta["fingerprint"]["model_file_sha256"] == digest
    assert meta["model_weights_sha256"] is None
    # the effective values, the model's defaults filled in, in provenance and fingerprint
    for record in (meta["settings"], meta["fingerprint"]):
        assert record["strength"] == 1.0 and record["tile_size"] == 32 and record["overlap"] == 8
        assert record["sampler"] == "ddim" and record["steps"] == 3 and record["samples"] == 2
    assert meta["settings"]["provider"] == "CPUExecutionProvider"
    assert meta["input"].endswith("in.ome.tif")


def test_ngff04_input_dtype_output_and_no_uncertainty(tmp_path, stack, models):
    src = tmp_path / "in.zarr"
    write_ome_zarr(src, stack, axes="zyx", zarr_format=2)
    out = tmp_path / "out.zarr"
    options = replace(FAST, dtype="input", zarr_format=2)
    restore_file(src, out, options, model=models["analytic2"], **QUIET)
    group = zarr.open_group(out, mode="r")
    assert group.metadata.zarr_format == 2
    assert open_restored(out).uncertainty is None  # one sample: no uncertainty unless asked
    assert group["0"].shape == (2, 60, 82)  # the input's axes, no channel added
    image, _ = _engine(stack, models["analytic2"])
    expected = np.clip(np.rint(image), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(group["0"][:], expected)


def test_image_smaller_than_a_tile(tmp_path, models):
    src = tmp_path / "tiny.tif"
    tifffile.imwrite(src, np.arange(7 * 9, dtype=np.float32).reshape(7, 9))
    report = restore_file(src, tmp_path / "o.zarr", FAST, model=models["analytic2"], **QUIET)
    assert report.output_shape == (14, 18)
    assert np.isfinite(zarr.open_group(tmp_path / "o.zarr", mode="r")["0"][:]).all()


def test_crash_then_resume_is_bit_identical(tmp_path, tiff, models, monkeypatch):
    options = replace(FAST, samples=2)
    run = {"model": models["analytic2"], **QUIET}
    restore_file(tiff, tmp_path / "ref" / "out.zarr", options, **run)

    original = restored_mod._write_block
    count = [0]
    lock = threading.Lock()

    def crashing(*args, block_info=None, **kwargs):
        # exactly three blocks finish, however many threads the scheduler runs
        with lock:
            if count[0] >= 3:
                raise TilesrError("simulated crash")
            count[0] += 1
            return original(*args, block_info=block_info, **kwargs)

    monkeypatch.setattr(restored_mod, "_write_block", crashing)
    out = tmp_path / "run" / "out.zarr"
    with pytest.raises(TilesrError, match="simulated"):
        restore_file(tiff, out, options, **run)
    monkeypatch.setattr(restored_mod, "_write_block", original)

    with pytest.raises(TilesrError, match="--resume"):
        restore_file(tiff, out, options, **run)
    with pytest.raises(TilesrError, match="seed"):
        restore_file(tiff, out, replace(options, seed=1), resume=True, **run)
    # with the bar on: skipped blocks advance it by their tile counts
    report = restore_file(tiff, out, options, resume=True, model=models["analytic2"])
    assert report.status == "resumed"
    assert (report.chunks_skipped, report.chunks_written) == (3, report.chunks_total - 3)

    ref = zarr.open_group(tmp_path / "ref" / "out.zarr", mode="r")
    got = zarr.open_group(out, mode="r")
    np.testing.assert_array_equal(got["0"][:], ref["0"][:])
    again = restore_file(tiff, out, options, resume=True, **run)
    assert again.status == "already complete"
    assert again.chunks_written == 0


def test_non_finite_input(tmp_path, models):
    data = np.random.default_rng(0).random((20, 24)).astype(np.float32)
    data[3, 4] = np.nan
    data[5, 6] = np.inf
    src = tmp_path / "nan.tif"
    tifffile.imwrite(src, data)
    with pytest.raises(TilesrError, match=r"2 NaN or infinite.*--nan-policy"):
        restore_file(src, tmp_path / "a.zarr", FAST, model=models["analytic1"], **QUIET)
    assert not (tmp_path / "a.zarr").exists()
    for policy in ("zero", "mean"):
        out = tmp_path / f"{policy}.zarr"
        options = replace(FAST, nan_policy=policy)
        restore_file(src, out, options, model=models["analytic1"], **QUIET)
        assert np.isfinite(zarr.open_group(out, mode="r")["0"][:]).all()


def test_refusals_leave_no_output(tmp_path, tiff, models):
    out, model = tmp_path / "o.zarr", models["analytic2"]
    with pytest.raises(TilesrError, match="does not exist"):
        restore_file(tiff, out, FAST, model=tmp_path / "missing.onnx", **QUIET)
    with pytest.raises(TilesrError, match="nan policy"):
        restore_file(tiff, out, RestoreOptions(nan_policy="x"), model=model)
    with pytest.raises(TilesrError, match="output dtype"):
        restore_file(tiff, out, RestoreOptions(dtype="uint8"), model=model)
    with pytest.raises(TilesrError, match="axes"):
        restore_file(tiff, out, RestoreOptions(axes="xy"), model=model)
    with pytest.raises(TilesrError, match="multiple of 8"):  # checked against the model
        restore_file(tiff, out, RestoreOptions(tile_size=20), model=models["spatial2"])
    assert not (tmp_path / "o.zarr").exists()


def test_output_inside_input_is_refused(tmp_path, stack, models):
    src = tmp_path / "in.zarr"
    write_ome_zarr(src, stack, axes="zyx")
    with pytest.raises(TilesrError, match="inside the input"):
        restore_file(src, src / "restored.zarr", FAST, model=models["analytic2"], **QUIET)
    with pytest.raises(TilesrError, match="input itself"):
        restore_file(src, src, FAST, model=models["analytic2"], overwrite=True, **QUIET)


@pytest.mark.slow
def test_local_cluster_pickles_the_whole_graph(tmp_path, tiff, stack, models):
    """TIFF reader, ONNX model and zarr writer all travel to worker processes by path."""
    out = tmp_path / "out.zarr"
    options = {"model": models["analytic2"], "scheduler": "local-cluster:1", **QUIET}
    restore_file(tiff, out, FAST, **options)
    image, _ = _engine(stack, models["analytic2"])
    np.testing.assert_array_equal(zarr.open_group(out, mode="r")["0"][:], image)
