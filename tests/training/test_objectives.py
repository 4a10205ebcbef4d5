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
from tilesr.diffusion.samplers import spaced_timesteps  # noqa: E402
from tilesr.diffusion.schedule import build_schedule  # noqa: E402
from tilesr.errors import TilesrError  # noqa: E402
from tilesr.export.onnx_export import export_onnx  # noqa: E402
from tilesr.training.config import TrainConfig, config_from_dict, load_config  # noqa: E402
from tilesr.training.trainer import train, training_timesteps  # noqa: E402

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


def test_refinement_trains_on_a_frozen_predictor_and_exports_one_image_space_model(tmp_path):
    from tilesr.model.checkpoint import load_checkpoint

    reg = train(_config(tmp_path / "reg", objective="regression", prediction="x0"), progress=False)
    config = _config(
        tmp_path / "ref", objective="refinement", prediction="v", predictor=str(reg.checkpoint)
    )
    assert config.model.cond_channels == 2
    result = train(config, progress=False)
    ckpt = load_checkpoint(result.checkpoint)
    frozen = {
        k.removeprefix("predictor."): v for k, v in ckpt.ema.items() if k.startswith("predictor.")
    }
    original = load_checkpoint(reg.checkpoint).ema
    assert frozen.keys() == original.keys()
    assert all(torch.equal(frozen[k], original[k]) for k in original)  # never trained
    report = export_onnx(result.checkpoint, tmp_path / "refined.onnx")
    assert report.max_abs_diff <= 1e-3
    meta = OnnxDenoiser(tmp_path / "refined.onnx").metadata
    assert (meta.prediction, meta.objective, meta.output) == ("x0", "diffusion", "x0")
    # resuming checks the nested network config and continues
    longer = dataclasses.replace(config, training=dataclasses.replace(config.training, steps=14))
    assert train(longer, resume=True, progress=False).step == 14


def test_refined_network_returns_the_image_when_the_refiner_is_exact():
    from tilesr.metadata import ScheduleSpec
    from tilesr.model.refined import RefinedUNet
    from tilesr.model.unet import UNetConfig

    small = {
        "channels": (8, 16),
        "bottleneck": 16,
        "attention": (False, False),
        "time_dim": 16,
        "groups": 4,
    }
    model = RefinedUNet(
        UNetConfig(**small, conditioning_only=True),
        UNetConfig(**small, cond_channels=2),
        ScheduleSpec(),
    ).eval()
    gen = torch.Generator().manual_seed(0)
    x0, eps, cond = (torch.randn(2, 1, 16, 16, generator=gen) for _ in range(3))
    t = torch.tensor([10.0, 900.0])
    a = model.sqrt_abar[t.long()].reshape(-1, 1, 1, 1)
    s = model.sqrt_one_minus[t.long()].reshape(-1, 1, 1, 1)
    with torch.no_grad():
        p = model.predictor(x0, cond, t)
        residual = x0 - p
        exact_v = a * eps - s * residual
        model.predict_residual_velocity = lambda *args: exact_v  # an oracle refiner
        out = model(a * x0 + s * eps, cond, t)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_refinement_needs_a_regression_predictor(tmp_path):
    diff = train(_config(tmp_path / "d", prediction="v"), progress=False)
    config = _config(
        tmp_path / "r", objective="refinement", prediction="v", predictor=str(diff.checkpoint)
    )
    with pytest.raises(TilesrError, match="is not a regression model's checkpoint"):
        train(config, progress=False)


def test_a_missing_predictor_is_named_when_training_starts(tmp_path):
    config = _config(
        tmp_path / "r",
        objective="refinement",
        prediction="v",
        predictor=str(tmp_path / "nowhere.pt"),
    )
    with pytest.raises(TilesrError, match=r"nowhere.pt does not exist; train the regression"):
        train(config, progress=False)


def _training(**changes):
    base = load_config(TINY).training
    return dataclasses.replace(base, batch_size=4000, **changes)


def test_uniform_timesteps_are_the_plain_draw():
    # configs without focus_steps train exactly as before the option existed
    schedule = build_schedule(load_config(TINY).diffusion)
    drawn = training_timesteps(schedule, _training(), np.random.default_rng(5))
    expected = np.random.default_rng(5).integers(0, schedule.num_timesteps, size=4000)
    np.testing.assert_array_equal(drawn, expected)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_focused_timesteps_are_the_ones_the_sampler_visits(fraction):
    schedule = build_schedule(load_config(TINY).diffusion)
    training = _training(focus_steps=4, focus_fraction=fraction)
    drawn = training_timesteps(schedule, training, np.random.default_rng(5))
    visited = spaced_timesteps(schedule, 4)
    share = np.isin(drawn, visited).mean()
    # the focused part plus the uniform draws that land there by chance (4 of T)
    expected = fraction + (1 - fraction) * 4 / schedule.num_timesteps
    assert abs(share - expected) < 0.03
    assert set(drawn[np.isin(drawn, visited)]) == set(visited)
    assert drawn.min() >= 0 and drawn.max() < schedule.num_timesteps


def test_focus_is_refused_for_regression():
    with pytest.raises(TilesrError, match="focus_steps is for diffusion"):
        dataclasses.replace(_training(), objective="regression", prediction="x0", focus_steps=4)
