"""Shared ONNX test models for the engine tests (written once per session)."""

from __future__ import annotations

import pytest

from tests.onnx_models import analytic_model, spatial_model, test_metadata


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Paths of the analytic and spatial test models at scales 1 and 2 (tile 32, overlap 8)."""
    root = tmp_path_factory.mktemp("models")
    return {
        "analytic1": analytic_model(root / "analytic1.onnx", metadata=test_metadata(scale=1)),
        "analytic2": analytic_model(root / "analytic2.onnx", metadata=test_metadata(scale=2)),
        "spatial1": spatial_model(
            root / "spatial1.onnx", std=0.02, gain=0.05, metadata=test_metadata(scale=1)
        ),
        "spatial2": spatial_model(
            root / "spatial2.onnx",
            std=0.02,
            gain=0.05,
            metadata=test_metadata(scale=2, size_multiple=8),
        ),
    }
