from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tilesr.errors import TilesrError  # noqa: E402
from tilesr.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from tilesr.training.config import TrainConfig, load_config  # noqa: E402
from tilesr.training.trainer import TrainResult, lr_factor, train  # noqa: E402

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def _config(out: Path, *, steps: int, validate: bool = False) -> TrainConfig:
    config = load_config(TINY).with_overrides(steps=steps, output_dir=out)
    training = dataclasses.replace(
        config.training, warmup=2, log_every=2, checkpoint_every=4, validate_every=steps
    )
    validation = dataclasses.replace(config.validation, n_images=2 if validate else 0, steps=4)
    return dataclasses.replace(config, training=training, validation=validation)


def test_lr_warms_up_then_decays_to_zero() -> None:
    factors = [lr_factor(s, warmup=5, total=50) for s in range(50)]
    assert factors[:5] == sorted(factors[:5]) and factors[0] < 0.5
    assert factors[5] == pytest.approx(1.0)
    assert factors[5:] == sorted(factors[5:], reverse=True)
    assert lr_factor(50, warmup=5, total=50) == pytest.approx(0.0)
    # warm-up longer than the run (e.g. --steps 3) is clipped rather than never decaying
    assert lr_factor(2, warmup=100, total=3) < 1


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # the tiny model gains nothing from threads, and they thrash on a busy 2-core machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("tiny")
    return train(_config(out, steps=30, validate=True), progress=False)


def test_tiny_run_writes_checkpoint_logs_and_plots(tiny_run: TrainResult) -> None:
    out = tiny_run.output_dir
    assert tiny_run.step == 30
    for name in (
        "checkpoint.pt",
        "loss.csv",
        "metrics.csv",
        "curves.png",
        "examples.png",
        "config.yaml",
    ):
        assert (out / name).is_file(), name
    ckpt = load_checkpoint(tiny_run.checkpoint)
    assert ckpt.step == 30
    meta = ckpt.model_metadata()
    assert (meta.scale, meta.tile_size, meta.size_multiple) == (2, 32, 4)
    assert set(ckpt.model) == set(ckpt.ema)
    # the EMA lags the raw weights, so they differ after training
    assert any(not torch.equal(ckpt.model[k], ckpt.ema[k]) for k in ckpt.model)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [30]
    assert tiny_run.metrics is not None
    assert float(rows[0]["ssim"]) == pytest.approx(tiny_run.metrics.ssim)
    assert -1 <= tiny_run.metrics.ssim <= 1 and math.isfinite(tiny_run.metrics.psnr)
    with open(out / "loss.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(2, 31, 2))


def test_loss_decreases(tiny_run: TrainResult) -> None:
    losses = load_checkpoint(tiny_run.checkpoint).history["loss"]
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:2])


def test_resumed_run_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    straight = train(_config(tmp_path / "a", steps=8), progress=False)
    config = _config(tmp_path / "b", steps=8)
    first = train(config, progress=False, stop_at=5)
    assert first.step == 5 and load_checkpoint(first.checkpoint).step == 5
    resumed = train(config, resume=True, progress=False)
    assert resumed.step == 8
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    for key in a.model:
        torch.testing.assert_close(a.model[key], b.model[key], rtol=0, atol=1e-6)
        torch.testing.assert_close(a.ema[key], b.ema[key], rtol=0, atol=1e-6)
    assert a.history["loss"] == pytest.approx(b.history["loss"], abs=1e-6)
    assert a.lr_scheduler is not None and b.lr_scheduler is not None
    assert a.lr_scheduler["last_epoch"] == b.lr_scheduler["last_epoch"] == 8


def test_existing_run_is_not_overwritten(tiny_run: TrainResult) -> None:
    config = _config(tiny_run.output_dir, steps=30)
    with pytest.raises(TilesrError, match="--resume"):
        train(config, progress=False)


def test_resume_refuses_another_architecture(tiny_run: TrainResult) -> None:
    config = _config(tiny_run.output_dir, steps=30)
    other = dataclasses.replace(config, model=dataclasses.replace(config.model, bottleneck=64))
    with pytest.raises(TilesrError, match="U-Net"):
        train(other, resume=True, progress=False)


def test_a_checkpoint_older_than_a_network_field_resumes(tmp_path: Path) -> None:
    # checkpoints written before ``cond_channels`` existed lack the key; the network is
    # the same, so extending such a run (--resume --steps N) must work
    config = _config(tmp_path / "old", steps=8)
    first = train(config, progress=False, stop_at=4)
    ckpt = load_checkpoint(first.checkpoint)
    assert ckpt.unet.pop("cond_channels") == 1
    save_checkpoint(first.checkpoint, ckpt)
    resumed = train(config, resume=True, progress=False)
    assert resumed.step == 8


def test_resuming_a_finished_run_trains_no_further(tiny_run: TrainResult) -> None:
    before = load_checkpoint(tiny_run.checkpoint)
    again = train(_config(tiny_run.output_dir, steps=30), resume=True, progress=False)
    assert again.step == 30
    after = load_checkpoint(again.checkpoint)
    for key in before.ema:
        assert torch.equal(before.ema[key], after.ema[key])
