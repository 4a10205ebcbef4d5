"""Small ONNX models built with ``onnx.helper`` (torch-free), for engine and pipeline tests.

* :func:`analytic_model`: eps = a[t] * noisy + b[t] * cond, the exact optimal noise
  predictor when x0 ~ N(cond, std**2) per pixel (see ``tests/analytic.py``). Per pixel,
  so a tiled restoration must equal an untiled one.
* :func:`spatial_model`: the same with a 5x5 blur of cond and a zero-sum 5x5 filter of
  noisy, both zero-padded at the input's edges, so tile borders and fusion matter.
* :func:`model_without_metadata`, :func:`model_with_wrong_rank`: broken files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from tilesr.diffusion.schedule import build_schedule
from tilesr.metadata import ModelMetadata, ScheduleSpec

OPSET = 17
#: a short schedule keeps the tables small; samplers respace it anyway
TEST_SCHEDULE = ScheduleSpec("linear", 200, 1e-4, 0.04)


def test_metadata(
    *, scale: int = 1, tile_size: int = 32, overlap: int = 8, size_multiple: int = 1
) -> ModelMetadata:
    """Metadata for a test model (norm percentiles 1 and 99.9)."""
    return ModelMetadata(
        schedule=TEST_SCHEDULE,
        scale=scale,
        tile_size=tile_size,
        overlap=overlap,
        size_multiple=size_multiple,
        norm_low=1.0,
        norm_high=99.9,
    )


def analytic_tables(
    metadata: ModelMetadata, std: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The tables a[t], b[t] of the optimal predictor for x0 ~ N(cond, std**2)."""
    abar = build_schedule(metadata.schedule).alphas_cumprod
    a = np.sqrt(1.0 - abar) / (abar * std**2 + 1.0 - abar)
    b = -np.sqrt(abar) * a
    return a.astype(np.float32), b.astype(np.float32)


def _io(metadata: ModelMetadata) -> tuple[list, list]:
    inputs = [
        helper.make_tensor_value_info(metadata.input_noisy, TensorProto.FLOAT, ["N", 1, "H", "W"]),
        helper.make_tensor_value_info(metadata.input_cond, TensorProto.FLOAT, ["N", 1, "H", "W"]),
        helper.make_tensor_value_info(metadata.input_timestep, TensorProto.FLOAT, ["N"]),
    ]
    shape = ["N", 1, "H", "W"]
    outputs = [helper.make_tensor_value_info(metadata.output, TensorProto.FLOAT, shape)]
    return inputs, outputs


def _table_nodes(metadata: ModelMetadata, std: float) -> tuple[list, list]:
    """Nodes computing per-sample coefficients ``a_t``, ``b_t`` of shape (N, 1, 1, 1)."""
    a, b = analytic_tables(metadata, std)
    inits = [
        numpy_helper.from_array(a, "table_a"),
        numpy_helper.from_array(b, "table_b"),
        numpy_helper.from_array(np.array([-1, 1, 1, 1], dtype=np.int64), "coef_shape"),
    ]
    nodes = [
        helper.make_node("Cast", [metadata.input_timestep], ["t_int"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table_a", "t_int"], ["a_flat"], axis=0),
        helper.make_node("Gather", ["table_b", "t_int"], ["b_flat"], axis=0),
        helper.make_node("Reshape", ["a_flat", "coef_shape"], ["a_t"]),
        helper.make_node("Reshape", ["b_flat", "coef_shape"], ["b_t"]),
    ]
    return nodes, inits


def _save(graph: onnx.GraphProto, metadata: ModelMetadata | None, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    if metadata is not None:
        helper.set_model_props(model, metadata.to_props())
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def analytic_model(
    path: str | Path, *, std: float = 0.5, metadata: ModelMetadata | None = None
) -> Path:
    """Write the per-pixel optimal predictor for x0 ~ N(cond, std**2) to ``path``."""
    meta = metadata or test_metadata()
    nodes, inits = _table_nodes(meta, std)
    nodes += [
        helper.make_node("Mul", ["a_t", meta.input_noisy], ["a_noisy"]),
        helper.make_node("Mul", ["b_t", meta.input_cond], ["b_cond"]),
        helper.make_node("Add", ["a_noisy", "b_cond"], [meta.output]),
    ]
    inputs, outputs = _io(meta)
    graph = helper.make_graph(nodes, "tilesr_analytic", inputs, outputs, inits)
    return _save(graph, meta, Path(path))


def spatial_kernels(gain: float = 0.2) -> NDArray[np.float32]:
    """Conv weights (2, 2, 5, 5): out 0 = blur(cond), out 1 = gain * (blur - identity)(noisy)."""
    r = np.arange(-2, 3, dtype=np.float64)
    g1 = np.exp(-(r**2) / 2.0)
    blur = np.outer(g1, g1)
    blur /= blur.sum()
    high = blur.copy()
    high[2, 2] -= 1.0  # zero-sum: leaves flat regions alone
    w = np.zeros((2, 2, 5, 5), dtype=np.float64)
    w[0, 0] = blur
    w[1, 1] = gain * high
    return w.astype(np.float32)


def spatial_model(
    path: str | Path,
    *,
    std: float = 0.3,
    gain: float = 0.2,
    metadata: ModelMetadata | None = None,
) -> Path:
    """Write eps = a[t] (noisy + gain * hp(noisy)) + b[t] blur(cond), zero-padded 5x5 filters."""
    meta = metadata or test_metadata()
    nodes, inits = _table_nodes(meta, std)
    inits += [
        numpy_helper.from_array(spatial_kernels(gain), "conv_w"),
        numpy_helper.from_array(np.array([0, 1], dtype=np.int64), "split_sizes"),
        numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "split_ones"),
    ]
    nodes += [
        # channel order as in the real graph: cond first, noisy second
        helper.make_node("Concat", [meta.input_cond, meta.input_noisy], ["stacked"], axis=1),
        helper.make_node("Conv", ["stacked", "conv_w"], ["filtered"], pads=[2, 2, 2, 2]),
        helper.make_node("Split", ["filtered", "split_ones"], ["blur_cond", "hp_noisy"], axis=1),
        helper.make_node("Add", [meta.input_noisy, "hp_noisy"], ["noisy_f"]),
        helper.make_node("Mul", ["a_t", "noisy_f"], ["a_noisy"]),
        helper.make_node("Mul", ["b_t", "blur_cond"], ["b_cond"]),
        helper.make_node("Add", ["a_noisy", "b_cond"], [meta.output]),
    ]
    inputs, outputs = _io(meta)
    graph = helper.make_graph(nodes, "tilesr_spatial", inputs, outputs, inits)
    return _save(graph, meta, Path(path))


def model_without_metadata(path: str | Path) -> Path:
    """A valid analytic graph with no tilesr metadata."""
    meta = test_metadata()
    nodes, inits = _table_nodes(meta, 0.5)
    nodes.append(helper.make_node("Mul", ["a_t", meta.input_noisy], [meta.output]))
    inputs, outputs = _io(meta)
    graph = helper.make_graph(nodes, "tilesr_nometa", inputs, outputs, inits)
    return _save(graph, None, Path(path))


def model_with_wrong_rank(path: str | Path) -> Path:
    """Metadata present but ``noisy`` and ``cond`` are rank 3 (N, H, W)."""
    meta = test_metadata()
    inputs = [
        helper.make_tensor_value_info(meta.input_noisy, TensorProto.FLOAT, ["N", "H", "W"]),
        helper.make_tensor_value_info(meta.input_cond, TensorProto.FLOAT, ["N", "H", "W"]),
        helper.make_tensor_value_info(meta.input_timestep, TensorProto.FLOAT, ["N"]),
    ]
    outputs = [helper.make_tensor_value_info(meta.output, TensorProto.FLOAT, ["N", "H", "W"])]
    nodes = [
        helper.make_node("Add", [meta.input_noisy, meta.input_cond], ["s"]),
        helper.make_node("Identity", ["s"], [meta.output]),
    ]
    graph = helper.make_graph(nodes, "tilesr_rank3", inputs, outputs)
    return _save(graph, meta, Path(path))


def regression_metadata(**geometry: int) -> ModelMetadata:
    """Metadata of a regression test model (``geometry``: scale, tile_size, ... as in
    :func:`test_metadata`): one deterministic evaluation, read as x0."""
    from dataclasses import replace

    return replace(
        test_metadata(**geometry),
        objective="regression",
        prediction="x0",
        output="x0",
        sampler="ddim",
        steps=1,
        samples=1,
    )


def regression_model(path: str | Path, *, metadata: ModelMetadata | None = None) -> Path:
    """A CARE-like regression graph: x0 = 0.8 * blur(cond), from the ``cond`` input alone."""
    meta = metadata or regression_metadata()
    inits = [numpy_helper.from_array(0.8 * spatial_kernels()[:1, :1], "blur_w")]
    nodes = [helper.make_node("Conv", [meta.input_cond, "blur_w"], [meta.output], pads=[2] * 4)]
    inputs = [helper.make_tensor_value_info(meta.input_cond, TensorProto.FLOAT, ["N", 1, "H", "W"])]
    outputs = [helper.make_tensor_value_info(meta.output, TensorProto.FLOAT, ["N", 1, "H", "W"])]
    graph = helper.make_graph(nodes, "tilesr_regression", inputs, outputs, inits)
    return _save(graph, meta, Path(path))
