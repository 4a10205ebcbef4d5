"""Model metadata: the new prediction / objective / sampling keys, and files from before them."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from tilesr.errors import TilesrError
from tilesr.metadata import ModelMetadata


def test_round_trip_keeps_every_field():
    meta = ModelMetadata(
        prediction="v",
        sampler="ddim",
        steps=5,
        samples=4,
        sample_noise="antithetic",
        strength=1.0,
        consistency=2.5,
        target_optics="same",
        output="v",
    )
    assert ModelMetadata.from_props(meta.to_props()) == meta


def test_a_network_without_a_target_optics_input_writes_no_such_key():
    # files stay readable by the tilesr versions before the key existed
    props = ModelMetadata().to_props()
    assert "target_optics" not in json.loads(props["tilesr"])
    assert ModelMetadata.from_props(props).target_optics is None


def test_a_file_from_before_the_sampling_keys_restores_as_it_did():
    old = {
        k: v
        for k, v in asdict(ModelMetadata(strength=0.6)).items()
        if k not in ("objective", "sampler", "steps", "samples", "sample_noise", "consistency")
    }
    props = {"tilesr": json.dumps({"format": "tilesr-ddpm", **old})}
    meta = ModelMetadata.from_props(props)
    assert (meta.prediction, meta.objective) == ("epsilon", "diffusion")
    assert (meta.sampler, meta.steps, meta.samples, meta.strength) == ("dpmpp", 20, 1, 0.6)
    assert meta.sample_noise == "independent"
    assert meta.consistency == 0.0  # no data consistency: exactly as before it existed


@pytest.mark.parametrize(
    "change,message",
    [
        ({"prediction": "score"}, "prediction must be one of epsilon, x0, v, got 'score'"),
        ({"objective": "gan"}, "objective must be one of diffusion, regression"),
        ({"objective": "regression", "prediction": "v"}, "a regression model predicts the image"),
        (
            {"objective": "regression", "prediction": "x0", "steps": 20},
            "a regression model is evaluated once per tile: steps and samples must be 1",
        ),
        ({"sampler": "euler"}, "sampler must be one of ddpm, ddim, dpmpp"),
        ({"steps": 0}, "steps must be a positive integer, got 0"),
        ({"samples": 0}, "samples must be a positive integer, got 0"),
        ({"sample_noise": "sobol"}, "sample_noise must be one of antithetic, independent"),
        ({"consistency": -1.0}, r"consistency must be a sigma in \[0, 64\] input pixels"),
        ({"consistency": True}, "consistency must be a sigma"),
        ({"target_optics": "blurry"}, "target_optics must be one of same, sharper, unknown"),
    ],
)
def test_impossible_values_are_refused_by_name(change, message):
    with pytest.raises(TilesrError, match=message):
        replace(ModelMetadata(), **change)


def test_a_regression_config_exports_no_sampling_defaults(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    from tilesr.export.onnx_export import export_defaults
    from tilesr.metadata import REGRESSION_SAMPLING

    monkeypatch.setenv("TILESR_DATA", str(tmp_path / "no-datasets"))
    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("regression.yaml", "bundled.yaml"):  # copied away from their data
        shutil.copy(configs / name, tmp_path / name)
    # an export reads the export and training sections only: no dataset is needed
    regression = export_defaults(tmp_path / "regression.yaml")
    assert not set(REGRESSION_SAMPLING) & set(regression)
    assert regression["context"] == 32  # the tiling is still chosen after training
    assert export_defaults(tmp_path / "bundled.yaml")["steps"] == 4
    (tmp_path / "bad.yaml").write_text("export:\n  context: -5\n")
    with pytest.raises(TilesrError, match="export context must be >= 0 pixels, got -5"):
        export_defaults(tmp_path / "bad.yaml")
