"""Choosing the ONNX Runtime device: auto falls back to the CPU in one line, cuda refuses."""

from __future__ import annotations

import logging

import onnxruntime as ort
import pytest

from tests.onnx_models import analytic_model
from tilesr.denoisers import onnx_backend
from tilesr.denoisers.onnx_backend import OnnxDenoiser, providers_for
from tilesr.errors import TilesrError

CPU_ONLY = "CUDAExecutionProvider" not in ort.get_available_providers()


@pytest.fixture
def model(tmp_path):
    return analytic_model(tmp_path / "m.onnx")


@pytest.fixture
def fresh_cache(monkeypatch):
    monkeypatch.setattr(onnx_backend, "_CACHE", {})


def test_cpu_device_uses_the_cpu_provider(model, fresh_cache):
    assert providers_for("cpu") == ("CPUExecutionProvider",)
    assert OnnxDenoiser(model, device="cpu").provider == "CPUExecutionProvider"


@pytest.mark.skipif(not CPU_ONLY, reason="this ONNX Runtime has a CUDA provider")
def test_cuda_on_a_cpu_only_runtime_is_refused_in_one_line(model, fresh_cache):
    with pytest.raises(TilesrError, match=r"has no CUDA provider.*install tilesr-gpu"):
        OnnxDenoiser(model, device="cuda")


def test_unknown_device_is_refused(model):
    with pytest.raises(TilesrError, match="device must be one of auto, cpu, cuda, got 'tpu'"):
        OnnxDenoiser(model, device="tpu")


@pytest.mark.skipif(not CPU_ONLY, reason="needs a runtime whose CUDA provider cannot start")
def test_a_cuda_provider_that_cannot_start_falls_back_with_one_line(
    model, fresh_cache, monkeypatch, caplog
):
    # a GPU build of ONNX Runtime on a machine without a driver lists CUDA but cannot
    # start it: pretend this CPU build lists it, so session creation really falls back
    listed = [*ort.get_available_providers(), "CUDAExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    with caplog.at_level(logging.WARNING, logger="tilesr"):
        den = OnnxDenoiser(model, device="auto")
    assert den.provider == "CPUExecutionProvider"
    lines = [r.getMessage() for r in caplog.records if r.name == "tilesr"]
    assert len(lines) == 1 and "could not start" in lines[0] and "on the CPU" in lines[0]
    onnx_backend._CACHE.clear()
    with pytest.raises(TilesrError, match=r"--device cuda: the CUDA provider .* could not start"):
        OnnxDenoiser(model, device="cuda")


def test_two_installed_runtimes_are_named_in_one_line(model, fresh_cache, monkeypatch, caplog):
    monkeypatch.setattr(
        onnx_backend, "installed_runtimes", lambda: ["onnxruntime 1.32.0", "onnxruntime-gpu 1.31.1"]
    )
    with caplog.at_level(logging.WARNING, logger="tilesr"):
        providers_for("auto")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "tilesr"]
    assert "onnxruntime 1.32.0 and onnxruntime-gpu 1.31.1 are both installed" in line


def test_cpu_calls_hold_at_most_cpu_call_tiles(model, fresh_cache, monkeypatch):
    import numpy as np

    monkeypatch.setattr(onnx_backend, "CPU_CALL_TILES", 3)
    den = OnnxDenoiser(model, device="cpu")
    session, sizes = den.session, []

    class Counting:  # the cached session, with the batch of every call recorded
        def __getattr__(self, name):
            return getattr(session, name)

        def run(self, names, feeds):
            sizes.append(len(next(iter(feeds.values()))))
            return session.run(names, feeds)

    rng = np.random.default_rng(0)
    x, c = (rng.standard_normal((7, 1, 32, 32), dtype=np.float32) for _ in range(2))
    t = rng.uniform(0, 99, 7).astype(np.float32)
    one = [den.predict(x[i : i + 1], c[i : i + 1], t[i : i + 1]) for i in range(7)]
    alone = np.concatenate(one)
    monkeypatch.setattr(OnnxDenoiser, "session", property(lambda self: Counting()))
    together = den.predict(x, c, t)
    assert sizes == [3, 3, 1]
    assert together.tobytes() == alone.tobytes()  # split or not, the same bits
