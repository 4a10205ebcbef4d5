"""Acceptance: simulate -> train -> export -> sample through ONNX Runtime, all via the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from tilesr.cli import main  # noqa: E402
from tilesr.denoisers.onnx_backend import OnnxDenoiser  # noqa: E402
from tilesr.denoisers.torch_backend import TorchDenoiser  # noqa: E402
from tilesr.diffusion.samplers import DDPMSampler, make_sampler  # noqa: E402
from tilesr.diffusion.sampling import sample  # noqa: E402
from tilesr.diffusion.schedule import build_schedule  # noqa: E402
from tilesr.training.config import load_config  # noqa: E402
from tilesr.training.data import ValidationImage, load_training_data  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
STEPS = 150
SAMPLE_STEPS = 50
Trained = tuple[Path, Path, ValidationImage]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # a tiny model gains nothing from threads, and they thrash on a busy 2-core machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def trained(_one_thread: None, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    _cli("simulate", str(data), "--pairs", "8", "--test", "2", "--size", "64", "--scale", "2",
         "--levels", "5", "--seed", "0")  # fmt: skip
    raw = yaml.safe_load(TINY.read_text())
    # a relative root: resolved next to the config file
    raw["data"]["sources"] = [{"kind": "biosr", "root": "data", "val_level": 5}]
    raw["validation"]["n_images"] = 1
    raw["validation"]["crop"] = 64  # the whole 64x64 test image
    raw["training"]["validate_every"] = 0  # validate once, at the end
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    run = root / "run"
    _cli("train", "--config", str(config_path), "--output-dir", str(run), "--steps", str(STEPS),
         "--quiet")  # fmt: skip
    onnx_path = root / "model.onnx"
    _cli("export", str(run / "checkpoint.pt"), str(onnx_path))
    (image,) = load_training_data(load_config(config_path)).validation
    return run / "checkpoint.pt", onnx_path, image


def test_training_wrote_its_outputs(trained: Trained) -> None:
    ckpt, _, _ = trained
    for name in ("metrics.csv", "loss.csv", "curves.png", "examples.png"):
        assert (ckpt.parent / name).is_file(), name


def test_onnx_and_torch_sample_the_same_image(trained: Trained) -> None:
    ckpt, onnx_path, image = trained
    onnx = OnnxDenoiser(onnx_path, threads=1)
    sampler = make_sampler("ddpm", build_schedule(onnx.metadata.schedule))
    via_onnx = sample(onnx, image.cond, sampler, steps=SAMPLE_STEPS, seed=3).mean
    assert via_onnx.shape == image.target.shape
    assert np.all(np.isfinite(via_onnx))
    torch_denoiser = TorchDenoiser.from_checkpoint(ckpt)
    via_torch = sample(torch_denoiser, image.cond, sampler, steps=SAMPLE_STEPS, seed=3).mean
    np.testing.assert_allclose(via_onnx, via_torch, atol=1e-3, rtol=0)


def test_mean_of_samples_beats_one_sample(trained: Trained) -> None:
    _, onnx_path, image = trained
    onnx = OnnxDenoiser(onnx_path, threads=1)
    # Clipping each step's x_0 estimate to the data range keeps the samples of this
    # barely trained model bounded; unclipped, a few wild samples (|x| >> 1) would
    # dominate any average.
    sampler = DDPMSampler(build_schedule(onnx.metadata.schedule), form="x0", clip_x0=1.0)

    def mse(n: int, seed: int) -> float:
        out = sample(onnx, image.cond, sampler, n_samples=n, steps=SAMPLE_STEPS, seed=seed).mean
        return float(np.mean((np.clip(out, -1, 1) - image.target) ** 2))

    # A model trained for seconds gives very diverse samples, so "a single sample" is
    # the expected error of an independent one-sample run, estimated over 8 seeds; the
    # mean of 8 samples removes most of the sample-to-sample variance.
    singles = [mse(1, seed) for seed in range(1, 9)]
    assert np.std(singles) > 0  # the samples really differ
    assert mse(8, 0) < float(np.mean(singles))
