"""The bundled models: found by name, and used when no model is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tilesr
from tilesr.errors import TilesrError
from tilesr.metadata import ModelMetadata


def test_bundled_model_is_found_by_name():
    path = tilesr.bundled_model()
    assert path.name == "default.onnx" and path.is_file()
    with pytest.raises(TilesrError, match="bundled model must be one of default, regression"):
        tilesr.bundled_model("nope")


def test_restore_without_a_model_uses_the_bundled_one():
    image = np.random.default_rng(0).uniform(0, 100, (24, 24)).astype(np.float32)
    result = tilesr.restore(image, options=tilesr.RestoreOptions(steps=1, samples=1))
    assert isinstance(result.metadata, ModelMetadata)
    assert result.image.shape == (24 * result.metadata.scale, 24 * result.metadata.scale)


@pytest.mark.parametrize("name", ["default", "regression"])
def test_bundled_models_restore_with_the_exported_config_defaults(name):
    # the metadata must say what configs/*.yaml's export section says (re-exported with
    # --config), e.g. the data consistency chosen on the validation data
    pytest.importorskip("torch")  # the export reads the training config
    from tilesr.denoisers.onnx_backend import OnnxDenoiser
    from tilesr.export.onnx_export import export_defaults

    config = {"default": "bundled", "regression": "regression"}[name]
    defaults = export_defaults(Path(__file__).resolve().parents[1] / "configs" / f"{config}.yaml")
    meta = OnnxDenoiser(tilesr.bundled_model(name)).metadata
    assert {k: getattr(meta, k) for k in defaults} == defaults
    assert meta.consistency == 3.0
