"""Training and exporting the other objectives: v / x0 prediction and plain regression."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from tilesr.denoisers.onnx_backend import OnnxDenoiser  # noqa: E402
from tilesr.denoisers.torch_backend import TorchDenoiser  # noqa: E402
from tilesr.errors import TilesrError  # noqa: E402
from tilesr.export.onnx_export import export_onnx  # noqa: E402
from tilesr.training.config import TrainConfig, config_from_dict, load_config  # noqa: E402
from tilesr.training.trainer import train  # noqa: E402

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(out: Path, **training) -> TrainConfig:
    config = load_config(TINY).with_overrides(steps=12, output_dir=out)
    tc = dataclasses.replace(
        config.training, warmup=2, log_every=4, checkpoint_every=12, **training
    )
    vc = dataclasses.replace(config.validation, n_images=1, steps=3)
    return dataclasses.replace(config, training=tc, validation=vc)


@pytest.mark.parametrize(
    "training,prediction,objective,inputs",
    [
        ({"prediction": "v"}, "v", "diffusion", ["noisy", "cond", "t"]),
        ({"prediction": "x0"}, "x0", "diffusion", ["noisy", "cond", "t"]),
        (
            {"objective": "regression", "prediction": "x0", "loss": "l1"},
            "x0",
            "regression",
            ["cond"],
        ),
    ],
)
def test_trained_model_exports_with_its_parameterisation(
    tmp_path, training, prediction, objective, inputs
):
    result = train(_config(tmp_path / "run", **training), progress=False)
    assert np.isfinite(result.loss) and result.metrics is not None
    assert result.cpu_seconds > 0
    report = export_onnx(result.checkpoint, tmp_path / "m.onnx")
    assert report.max_abs_diff <= 1e-3
    den = OnnxDenoiser(tmp_path / "m.onnx")
    meta = den.metadata
    assert (meta.prediction, meta.objective) == (prediction, objective)
    assert meta.output == {"v": "v", "x0": "x0"}[prediction]
    assert [i.name for i in den.session.get_inputs()] == inputs
    if objective == "regression":
        assert (meta.sampler, meta.steps, meta.samples, meta.strength) == ("ddim", 1, 1, 1.0)
    # the ONNX model and its checkpoint agree through the one Denoiser protocol
    rng = np.random.default_rng(0)
    noisy, cond = rng.standard_normal((2, 2, 1, 32, 32), dtype=np.float32)
    t = np.array([3.0, 700.0], np.float32)
    torch_out = TorchDenoiser.from_checkpoint(result.checkpoint).predict(noisy, cond, t)
    np.testing.assert_allclose(den.predict(noisy, cond, t), torch_out, atol=1e-4)


def test_regression_model_ignores_the_noisy_input_and_timestep(tmp_path):
    result = train(
        _config(tmp_path / "run", objective="regression", prediction="x0"), progress=False
    )
    den = TorchDenoiser.from_checkpoint(result.checkpoint)
    rng = np.random.default_rng(1)
    cond = rng.standard_normal((1, 1, 32, 32), dtype=np.float32)
    a = den.predict(np.zeros_like(cond), cond, np.zeros(1, np.float32))
    b = den.predict(
        rng.standard_normal(cond.shape, dtype=np.float32), cond, np.full(1, 500.0, np.float32)
    )
    np.testing.assert_array_equal(a, b)


def test_regression_with_a_noise_prediction_is_refused():
    raw = {
        "data": {"sources": [{"kind": "simulated", "n": 2, "size": 32}]},
        "training": {"objective": "regression", "prediction": "v"},
    }
    with pytest.raises(TilesrError, match="objective 'regression' predicts the image"):
        config_from_dict(raw)


def test_best_checkpoint_is_the_validation_with_the_highest_psnr(tmp_path):
    from tilesr.model.checkpoint import load_checkpoint

    config = _config(tmp_path / "run")
    config = dataclasses.replace(
        config, training=dataclasses.replace(config.training, validate_every=4)
    )
    result = train(config, progress=False)
    history = load_checkpoint(result.checkpoint).history
    best = load_checkpoint(result.output_dir / "best.pt")
    assert history["val_step"] == [4, 8, 12]
    assert best.step == history["val_step"][int(np.argmax(history["psnr"]))]
