from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from tests.model.tiny import tiny_checkpoint, tiny_config, tiny_metadata  # noqa: E402
from tilesr import __version__  # noqa: E402
from tilesr.denoisers.onnx_backend import OnnxDenoiser  # noqa: E402
from tilesr.denoisers.torch_backend import TorchDenoiser  # noqa: E402
from tilesr.diffusion import build_schedule, make_sampler  # noqa: E402
from tilesr.diffusion.sampling import sample  # noqa: E402
from tilesr.errors import TilesrError  # noqa: E402
from tilesr.export import onnx_export  # noqa: E402
from tilesr.export.onnx_export import ExportReport, export_onnx  # noqa: E402
from tilesr.model.checkpoint import Checkpoint, weights_sha256  # noqa: E402


@dataclass(frozen=True)
class Exported:
    checkpoint_path: Path
    checkpoint: Checkpoint
    report: ExportReport


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    folder = tmp_path_factory.mktemp("export")
    ckpt = tiny_checkpoint(folder / "tiny.pt", ema_offset=0.02)
    report = export_onnx(folder / "tiny.pt", folder / "tiny.onnx")
    return Exported(folder / "tiny.pt", ckpt, report)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_report_names_the_file_parity_and_ema_hash(exported: Exported) -> None:
    report = exported.report
    assert report.path.is_file()
    assert 0 <= report.max_abs_diff <= 1e-3
    assert report.weights_sha256 == weights_sha256(exported.checkpoint.ema)
    assert report.weights_sha256 != weights_sha256(exported.checkpoint.model)


def test_graph_is_valid_with_dynamic_batch_and_size(exported: Exported) -> None:
    proto = onnx.load(str(exported.report.path))
    onnx.checker.check_model(proto, full_check=True)
    opsets = {o.domain: o.version for o in proto.opset_import}
    assert opsets.get("", opsets.get("ai.onnx", 0)) >= 17

    def dims(value_info) -> list:
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in proto.graph.input}
    assert set(inputs) == {"noisy", "cond", "t"}
    for name in ("noisy", "cond"):
        batch, channels, height, width = inputs[name]
        assert channels == 1
        assert all(isinstance(d, str) and d for d in (batch, height, width)), inputs[name]
    assert isinstance(inputs["t"][0], str)
    assert [o.name for o in proto.graph.output] == ["eps"]


def test_metadata_round_trips_through_the_onnx_backend(exported: Exported) -> None:
    denoiser = OnnxDenoiser(exported.report.path, threads=1)
    expected = replace(
        tiny_metadata(tiny_config()),
        weights_sha256=exported.report.weights_sha256,
        tilesr_version=__version__,
    )
    assert denoiser.metadata == expected


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 16, 16), (3, 8, 20)])
def test_onnx_runtime_matches_torch_at_any_batch_and_size(
    exported: Exported, batch: int, height: int, width: int
) -> None:
    rng = np.random.default_rng(batch)
    noisy = rng.standard_normal((batch, 1, height, width), dtype=np.float32)
    cond = rng.uniform(-1, 1, (batch, 1, height, width)).astype(np.float32)
    t = rng.integers(0, 100, batch).astype(np.float32)
    onnx_eps = OnnxDenoiser(exported.report.path, threads=1).predict(noisy, cond, t)
    torch_denoiser = TorchDenoiser.from_checkpoint(exported.checkpoint_path)
    torch_eps = torch_denoiser.predict(noisy, cond, t)
    assert onnx_eps.shape == (batch, 1, height, width)
    np.testing.assert_allclose(onnx_eps, torch_eps, atol=1e-4)


def test_same_seed_restores_the_same_image_with_both_backends(exported: Exported) -> None:
    onnx_denoiser = OnnxDenoiser(exported.report.path, threads=1)
    torch_denoiser = TorchDenoiser.from_checkpoint(exported.checkpoint_path)
    sampler = make_sampler("ddim", build_schedule(onnx_denoiser.metadata.schedule))
    cond = np.random.default_rng(3).uniform(-1, 1, (16, 24)).astype(np.float32)
    a = sample(onnx_denoiser, cond, sampler, n_samples=2, steps=4, seed=11)
    b = sample(torch_denoiser, cond, sampler, n_samples=2, steps=4, seed=11)
    assert a.mean.shape == (16, 24)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-3)
    np.testing.assert_allclose(a.std, b.std, atol=1e-3)
    # a different seed gives a different image: the comparison above is not vacuous
    c = sample(onnx_denoiser, cond, sampler, n_samples=2, steps=4, seed=12)
    assert np.abs(a.mean - c.mean).max() > 1e-2


def test_existing_output_is_refused_unless_overwrite(exported: Exported, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(TilesrError, match=r"model\.onnx already exists"):
        export_onnx(exported.checkpoint_path, out)
    assert out.read_bytes() == b"keep me"
    report = export_onnx(exported.checkpoint_path, out, overwrite=True)
    assert OnnxDenoiser(report.path).metadata.weights_sha256 == exported.report.weights_sha256


def test_failed_parity_leaves_no_file(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(TilesrError, match="disagree"):
        export_onnx(exported.checkpoint_path, tmp_path / "model.onnx")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("kind", ["tensor", "text"])
def test_files_that_are_not_checkpoints_are_refused(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "weights.pt"
    if kind == "tensor":
        torch.save(torch.ones(4), source)
    else:
        source.write_text("hello\n")
    with pytest.raises(TilesrError, match=r"weights\.pt is not a"):
        export_onnx(source, tmp_path / "model.onnx")
    assert _files(tmp_path) == ["weights.pt"]


def test_opset_below_17_is_refused(exported: Exported, tmp_path: Path) -> None:
    with pytest.raises(TilesrError, match=r"opset must be an integer in \[17, .*got 16"):
        export_onnx(exported.checkpoint_path, tmp_path / "model.onnx", opset=16)


def test_defaults_chosen_after_training_are_recorded(exported: Exported, tmp_path: Path) -> None:
    assert OnnxDenoiser(exported.report.path, threads=1).metadata.strength == 1.0
    chosen = {
        "overlap": 24,
        "context": 32,
        "strength": 0.6,
        "sampler": "ddim",
        "steps": 4,
        "samples": 5,
        "sample_noise": "antithetic",
        "uncertainty_scale": 1.5,
        "uncertainty_pool": 4.0,
    }
    export_onnx(exported.checkpoint_path, tmp_path / "s.onnx", defaults=chosen)
    meta = OnnxDenoiser(tmp_path / "s.onnx", threads=1).metadata
    assert {k: getattr(meta, k) for k in chosen} == chosen
    with pytest.raises(TilesrError, match="strength"):
        export_onnx(exported.checkpoint_path, tmp_path / "bad.onnx", defaults={"strength": 1.5})
    with pytest.raises(TilesrError, match=r"cannot set \['scale'\]"):
        export_onnx(exported.checkpoint_path, tmp_path / "bad.onnx", defaults={"scale": 4})
    assert not (tmp_path / "bad.onnx").exists()
    assert not (tmp_path / "bad.onnx").exists()


def test_export_removes_what_a_killed_export_left(tmp_path: Path) -> None:
    # the hidden temporary a SIGKILLed export leaves goes with the next export to that
    # name once stale (the same mechanism as checkpoint saves: temp_sibling)
    import os
    import time

    from tilesr.model import checkpoint

    tiny_checkpoint(tmp_path / "tiny.pt")
    killed = tmp_path / ".tiny.onnx.0123456789ab.tmp"
    killed.write_bytes(b"half an onnx file")
    old = time.time() - 2 * checkpoint.STALE_TEMP_S
    os.utime(killed, (old, old))
    export_onnx(tmp_path / "tiny.pt", tmp_path / "tiny.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.pt"]


def test_the_target_optics_chosen_at_export_is_fixed_in_the_graph(tmp_path: Path) -> None:
    from tilesr.metadata import TARGET_OPTICS_PLANE
    from tilesr.model.checkpoint import build_model

    ckpt = tiny_checkpoint(tmp_path / "optics.pt", target_optics="unknown")
    report = export_onnx(
        tmp_path / "optics.pt", tmp_path / "same.onnx", defaults={"target_optics": "same"}
    )
    denoiser = OnnxDenoiser(report.path, threads=1)
    assert denoiser.metadata.target_optics == "same"
    network = build_model(ckpt)  # the raw network: two conditioning channels
    assert report.weights_sha256 == weights_sha256(network.state_dict())
    rng = np.random.default_rng(0)
    noisy = rng.standard_normal((2, 1, 8, 12), dtype=np.float32)
    cond = rng.uniform(-1, 1, (2, 1, 8, 12)).astype(np.float32)
    t = np.array([5.0, 60.0], dtype=np.float32)
    plane = np.full_like(cond, TARGET_OPTICS_PLANE["same"])
    with torch.inference_mode():
        expected = network(
            torch.from_numpy(noisy),
            torch.from_numpy(np.concatenate([cond, plane], 1)),
            torch.from_numpy(t),
        ).numpy()
    np.testing.assert_allclose(denoiser.predict(noisy, cond, t), expected, atol=1e-4)
    # without a choice the checkpoint's stands
    kept = export_onnx(tmp_path / "optics.pt", tmp_path / "unknown.onnx")
    assert OnnxDenoiser(kept.path, threads=1).metadata.target_optics == "unknown"


def test_target_optics_needs_a_network_trained_for_it(exported: Exported, tmp_path: Path) -> None:
    assert OnnxDenoiser(exported.report.path, threads=1).metadata.target_optics is None
    assert "target_optics" not in onnx.load(str(exported.report.path)).metadata_props[0].value
    with pytest.raises(TilesrError, match=r"trained with data\.target_optics"):
        export_onnx(
            exported.checkpoint_path, tmp_path / "bad.onnx", defaults={"target_optics": "same"}
        )
    assert not (tmp_path / "bad.onnx").exists()
