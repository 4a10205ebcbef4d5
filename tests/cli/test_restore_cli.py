"""tilesr restore: thin command, one-line summary, one-line errors without tracebacks."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner

from tests import onnx_models
from tilesr import restore_file as restore_file_module
from tilesr.cli import main

FAST = ["--steps", "2", "--sampler", "ddim", "--block-size", "48", "--no-progress"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_models")
    return onnx_models.analytic_model(root / "m.onnx", metadata=onnx_models.test_metadata(scale=2))


@pytest.fixture
def tiff(tmp_path):
    data = (np.random.default_rng(2).random((2, 24, 30)) * 500).astype(np.uint16)
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "ZYX"})
    return path


def _run(*args):
    result = CliRunner().invoke(main, ["restore", *map(str, args)])
    return result.exit_code, result.output


def _assert_one_line_error(code, output):
    assert code != 0
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("Error:")


def test_restores_and_prints_one_line(tmp_path, tiff, model):
    out = tmp_path / "out.zarr"
    code, output = _run(tiff, out, "--model", model, "--samples", "2", *FAST)
    assert code == 0, output
    assert output.strip().count("\n") == 0
    assert "czyx 2x2x48x60" in output and "block(s) written" in output
    group = zarr.open_group(out, mode="r")
    assert group.attrs["tilesr"]["status"] == "complete"
    # on by default with --samples > 1: channel 1 of the one image
    assert group.attrs["tilesr"]["layout"]["uncertainty"] == [1]

    code, output = _run(tiff, out, "--model", model, "--samples", "2", "--resume", *FAST)
    assert code == 0 and "already complete" in output


def test_options_reach_the_output(tmp_path, tiff, model):
    out = tmp_path / "out.zarr"
    code, output = _run(
        tiff,
        out,
        "--model",
        model,
        "--dtype",
        "input",
        "--zarr-format",
        "2",
        "--no-uncertainty",
        "--seed",
        "9",
        "--axes",
        "cyx",
        *FAST,
    )
    assert code == 0, output
    group = zarr.open_group(out, mode="r")
    assert group.metadata.zarr_format == 2
    assert group["0"].dtype == np.uint16
    assert group["0"].shape == (2, 48, 60)  # the input's c axis only: no uncertainty
    assert group.attrs["tilesr"]["layout"]["uncertainty"] == []
    assert group.attrs["tilesr"]["settings"]["seed"] == 9
    assert group.attrs["multiscales"][0]["axes"][0]["name"] == "c"


def test_a_guessed_axis_is_one_notice_line_on_stderr(tmp_path, model):
    data = (np.random.default_rng(3).random((2, 24, 30)) * 500).astype(np.uint16)
    tifffile.imwrite(tmp_path / "planes.tif", data, photometric="minisblack", metadata=None)
    result = CliRunner().invoke(
        main,
        [
            "restore",
            str(tmp_path / "planes.tif"),
            str(tmp_path / "o.zarr"),
            "--model",
            str(model),
            *FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    (notice,) = result.stderr.splitlines()
    assert notice.startswith("tilesr: ") and "'zyx'" in notice
    assert "pixel sizes are unknown" in notice
    assert "restored" in result.stdout and "zyx 2x48x60" in result.stdout


def test_a_singleton_channel_the_user_names_reaches_the_output(tmp_path, model):
    data = (np.random.default_rng(4).random((1, 2, 24, 30)) * 500).astype(np.uint16)
    src = tmp_path / "one-channel.ome.tif"
    tifffile.imwrite(src, data, ome=True, photometric="minisblack", metadata={"axes": "CZYX"})
    out = tmp_path / "o.zarr"
    code, output = _run(src, out, "--model", model, "--axes", "czyx", *FAST)
    assert code == 0, output
    group = zarr.open_group(out, mode="r")
    axes = group.attrs["ome"]["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["c", "z", "y", "x"]
    assert group["0"].shape == (1, 2, 48, 60)


def test_existing_output_is_refused_and_kept(tmp_path, tiff, model):
    out = tmp_path / "out.zarr"
    assert _run(tiff, out, "--model", model, *FAST)[0] == 0
    before = zarr.open_group(out, mode="r")["0"][:]
    code, output = _run(tiff, out, "--model", model, "--seed", "3", *FAST)
    _assert_one_line_error(code, output)
    assert "--overwrite" in output and "--resume" in output
    np.testing.assert_array_equal(zarr.open_group(out, mode="r")["0"][:], before)

    code, output = _run(tiff, out, "--model", model, "--seed", "3", "--resume", *FAST)
    _assert_one_line_error(code, output)
    assert "seed" in output

    code, output = _run(tiff, out, "--model", model, "--seed", "3", "--overwrite", *FAST)
    assert code == 0, output
    assert zarr.open_group(out, mode="r").attrs["tilesr"]["settings"]["seed"] == 3


@pytest.mark.parametrize(
    ("make_input", "extra", "needle"),
    [
        (lambda p: p / "missing.tif", [], "does not exist"),
        (lambda p: (p / "bad.tif").write_bytes(b"II*\x00garbage") and p / "bad.tif", [], "TIFF"),
        (
            lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt",
            [],
            "not a supported image",
        ),
        (None, ["--axes", "yxz"], "end with 'yx'"),
        (None, ["--level", "3"], "level 3 is out of range"),
        (None, ["--overwrite", "--resume"], "exclude"),
    ],
)
def test_errors_are_one_line_and_leave_no_output(tmp_path, tiff, model, make_input, extra, needle):
    src = make_input(tmp_path) if make_input else tiff
    out = tmp_path / "out.zarr"
    code, output = _run(src, out, "--model", model, *extra, *FAST)
    _assert_one_line_error(code, output)
    assert needle in output
    assert not out.exists()


def test_non_finite_input_is_refused_before_writing(tmp_path, model):
    data = np.ones((16, 16), np.float32)
    data[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", data)
    code, output = _run(tmp_path / "nan.tif", tmp_path / "o.zarr", "--model", model, *FAST)
    _assert_one_line_error(code, output)
    assert "--nan-policy" in output
    assert not (tmp_path / "o.zarr").exists()


def test_model_is_required_without_a_bundled_default(tmp_path, tiff, monkeypatch):
    # the repository ships a bundled model; pretend an install without one
    monkeypatch.setattr(restore_file_module, "DEFAULT_MODEL", tmp_path / "missing.onnx")
    code, output = _run(tiff, tmp_path / "o.zarr", *FAST)
    _assert_one_line_error(code, output)
    assert "--model" in output


def test_help_has_examples():
    result = CliRunner().invoke(main, ["restore", "--help"])
    assert result.exit_code == 0
    examples = result.output.split("Examples:", 1)[1]
    assert "--scheduler tcp://" in examples and "--resume" in examples
    assert "restored.ome.tif" in examples
