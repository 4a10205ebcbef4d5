"""The input is never modified: its folder is checksummed before and after every kind of run."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import tifffile
import zarr

from tests.reliability.conftest import FAST, run_cli, tree_digest, write_tiff
from tests.reliability.test_disk_errors import _failing_store
from tilesr.io import open_image, write_ome_zarr
from tilesr.io import restored as restored_mod


@pytest.fixture
def inputs(tmp_path):
    """One folder holding a TIFF, an OME-Zarr 0.5, an OME-Zarr 0.4, a plain zarr and a NaN TIFF."""
    folder = tmp_path / "inputs"
    tif = write_tiff(folder / "in.tif", (2, 40, 44))
    stack = open_image(tif).data.compute()
    write_ome_zarr(folder / "v3.zarr", stack, axes="zyx", zarr_format=3)
    write_ome_zarr(folder / "v2.zarr", stack, axes="zyx", zarr_format=2)
    zarr.save_array(str(folder / "plain.zarr"), stack[0], zarr_format=3)
    nan = np.random.default_rng(1).random((30, 30)).astype(np.float32)
    nan[3, 3] = np.nan
    tifffile.imwrite(folder / "nan.tif", nan)
    return folder


def test_no_kind_of_run_modifies_the_input(tmp_path, inputs, models, monkeypatch):
    digest = tree_digest(inputs)
    model = ["--model", models["analytic2"]]
    outs = tmp_path / "outs"
    outs.mkdir()
    runs: list[tuple[str, list[object], bool]] = [
        ("tiff", [inputs / "in.tif", outs / "a.zarr", *model, *FAST], True),
        ("ngff-0.5", [inputs / "v3.zarr", outs / "b.zarr", *model, *FAST], True),
        (
            "ngff-0.4",
            [inputs / "v2.zarr", outs / "c.zarr", *model, "--dtype", "input", *FAST],
            True,
        ),
        ("plain zarr", [inputs / "plain.zarr", outs / "d.zarr", *model, *FAST], True),
        (
            "two samples",
            [inputs / "in.tif", outs / "e.zarr", *model, "--samples", "2", *FAST],
            True,
        ),
        ("overwrite", [inputs / "in.tif", outs / "a.zarr", *model, "--overwrite", *FAST], True),
        ("resume complete", [inputs / "in.tif", outs / "a.zarr", *model, "--resume", *FAST], True),
        ("exists", [inputs / "in.tif", outs / "a.zarr", *model, *FAST], False),
        ("nan refused", [inputs / "nan.tif", outs / "f.zarr", *model, *FAST], False),
        (
            "nan replaced",
            [inputs / "nan.tif", outs / "g.zarr", *model, "--nan-policy", "mean", *FAST],
            True,
        ),
        ("bad axes", [inputs / "v3.zarr", outs / "h.zarr", *model, "--axes", "xy", *FAST], False),
        ("bad level", [inputs / "v3.zarr", outs / "h.zarr", *model, "--level", "5", *FAST], False),
        (
            "missing model",
            [inputs / "in.tif", outs / "h.zarr", "--model", tmp_path / "no.onnx", *FAST],
            False,
        ),
        (
            "output inside input",
            [inputs / "v3.zarr", inputs / "v3.zarr" / "o.zarr", *model, *FAST],
            False,
        ),
    ]
    for name, args, ok in runs:
        code, output = run_cli("restore", *args)
        assert (code == 0) == ok, (name, output)
        assert tree_digest(inputs) == digest, name

    # failures while writing: a full disk, and a crash inside a block task
    _failing_store(monkeypatch, errno.ENOSPC, after=2, prefix="0/c")
    code, _ = run_cli("restore", inputs / "v3.zarr", outs / "i.zarr", *model, *FAST)
    assert code != 0
    monkeypatch.undo()
    assert tree_digest(inputs) == digest

    def crash(*args, **kwargs):
        raise RuntimeError("simulated bug in a block task")

    monkeypatch.setattr(restored_mod, "_write_block", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        run_cli("restore", inputs / "in.tif", outs / "j.zarr", *model, *FAST)
    monkeypatch.undo()
    assert tree_digest(inputs) == digest
    # and the interrupted outputs both finish with --resume
    for src, out in ((inputs / "v3.zarr", outs / "i.zarr"), (inputs / "in.tif", outs / "j.zarr")):
        code, output = run_cli("restore", src, out, *model, "--resume", *FAST)
        assert code == 0, output
    assert tree_digest(inputs) == digest
