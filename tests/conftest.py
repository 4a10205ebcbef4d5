"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from tests.onnx_models import analytic_model, spatial_model
from tests.onnx_models import test_metadata as small_metadata


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """ONNX test models (tile 32, overlap 8), written once per session.

    ``analytic1``/``analytic2``: the per-pixel optimal predictor at scales 1 and 2;
    ``spatial1``/``spatial2``: the 5x5 conv model, where tile borders and fusion matter.
    """
    root = tmp_path_factory.mktemp("models")
    return {
        "analytic1": analytic_model(root / "analytic1.onnx", metadata=small_metadata(scale=1)),
        "analytic2": analytic_model(root / "analytic2.onnx", metadata=small_metadata(scale=2)),
        "spatial1": spatial_model(
            root / "spatial1.onnx", std=0.02, gain=0.05, metadata=small_metadata(scale=1)
        ),
        "spatial2": spatial_model(
            root / "spatial2.onnx",
            std=0.02,
            gain=0.05,
            metadata=small_metadata(scale=2, size_multiple=8),
        ),
    }
