"""tilesr restore --device: the session runs where asked; what ran is recorded and must match."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tifffile
import zarr
from click.testing import CliRunner

from tilesr.cli import main
from tilesr.engine.model import open_model
from tilesr.errors import TilesrError
from tilesr.options import RestoreOptions
from tilesr.restore_file import restore_file

CPU_ONLY = "CUDAExecutionProvider" not in ort.get_available_providers()
FAST = ["--steps", "2", "--sampler", "ddim", "--no-progress"]


@pytest.fixture
def tiff(tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", np.random.default_rng(1).uniform(0, 9, (20, 24)))
    return tmp_path / "in.tif"


def _run(*args):
    result = CliRunner().invoke(main, ["restore", *map(str, args)])
    return result.exit_code, result.output


def test_the_session_is_opened_on_the_device_asked(models):
    model = open_model(models["analytic2"], RestoreOptions(device="cpu"))
    assert model.denoiser.device == "cpu" and model.provider == "CPUExecutionProvider"
    with pytest.raises(TilesrError, match="device must be one of auto, cpu, cuda, got 'tpu'"):
        RestoreOptions(device="tpu")


def test_device_and_the_provider_that_ran_are_recorded_and_must_match(tmp_path, tiff, models):
    out = tmp_path / "out.zarr"
    code, output = _run(tiff, out, "--model", models["analytic2"], "--device", "cpu", *FAST)
    assert code == 0, output
    meta = zarr.open_group(out, mode="r").attrs["tilesr"]
    for record in (meta["settings"], meta["fingerprint"]):
        assert record["device"] == "cpu" and record["provider"] == "CPUExecutionProvider"
    # blocks of another device would not be the same bits: a resume must ask for the same
    code, output = _run(tiff, out, "--model", models["analytic2"], "--resume", *FAST)
    assert code == 1 and "device" in output and "Traceback" not in output


@pytest.mark.skipif(not CPU_ONLY, reason="this ONNX Runtime has a CUDA provider")
def test_cuda_without_cuda_is_one_line_and_no_output(tmp_path, tiff, models):
    out = tmp_path / "out.zarr"
    code, output = _run(tiff, out, "--model", models["analytic2"], "--device", "cuda", *FAST)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "has no CUDA provider" in lines[0]
    assert not out.exists()
    with pytest.raises(TilesrError, match="has no CUDA provider"):
        restore_file(tiff, out, RestoreOptions(device="cuda"), model=models["analytic2"])
