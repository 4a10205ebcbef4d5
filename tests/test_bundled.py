"""The bundled models: found by name, and used when no model is given."""

from __future__ import annotations

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
