"""Export a training checkpoint's EMA weights to an ONNX model the engine can run.

The graph takes ``noisy`` and ``cond`` (N, 1, H, W) and ``t`` (N,) float32 and returns
the network output (N, 1, H, W) under the name ``eps`` (noise, clean image or velocity as
the metadata's ``prediction`` says; a regression graph takes ``cond`` only), with N, H
and W dynamic; the model's :class:`ModelMetadata`
(schedule, scale, tiles, weights hash) rides along in ``metadata_props``. Every export
is checked: ``onnx.checker``, the engine's own metadata reader, and ONNX Runtime against
PyTorch at two batch sizes and two image sizes.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tilesr import __version__
from tilesr.denoisers.torch_backend import check_size_multiple
from tilesr.errors import TilesrError, first_line
from tilesr.metadata import REGRESSION_SAMPLING, ModelMetadata
from tilesr.model.checkpoint import (
    build_model,
    fsync_dir,
    load_checkpoint,
    temp_sibling,
    weights_sha256,
)
from tilesr.model.target_optics import engine_network
from tilesr.model.unet import UNet

MIN_OPSET = 17
#: metadata an export may set after training: how to tile (tools/bench_overlap.py) and
#: sample, the uncertainty's calibration (tools/calibrate.py), the data consistency and
#: the target optics (for a network with that input); nothing that would change what the
#: weights mean
AFTER_TRAINING = (
    "overlap",
    "context",
    "strength",
    "sampler",
    "steps",
    "samples",
    "sample_noise",
    "uncertainty_scale",
    "uncertainty_pool",
    "consistency",
    "target_optics",
)
#: above this the parity check fails the export (outputs are unit-scale noise predictions)
PARITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ExportReport:
    """Where the model went, how closely ONNX Runtime matched PyTorch, and the weights hash."""

    path: Path
    max_abs_diff: float
    weights_sha256: str


def export_onnx(
    checkpoint_path: str | Path,
    out_path: str | Path,
    *,
    overwrite: bool = False,
    opset: int = MIN_OPSET,
    defaults: Mapping[str, Any] | None = None,
) -> ExportReport:
    """Convert the EMA weights of a checkpoint to an ONNX model with tilesr metadata.

    Parameters
    ----------
    checkpoint_path
        A checkpoint written by :func:`tilesr.model.checkpoint.save_checkpoint`.
    out_path
        The ``.onnx`` file to write; written to a temporary file first and renamed, so a
        failed export never leaves a file that looks complete.
    overwrite
        Replace ``out_path`` if it exists (refused otherwise).
    opset
        ONNX opset, at least 17.
    defaults
        Sampling and uncertainty defaults chosen after training (keys of
        :data:`AFTER_TRAINING`, e.g. from a config's ``export`` section via
        :func:`export_defaults`), replacing the checkpoint's.

    Returns
    -------
    ExportReport
        The path, the largest absolute ORT-vs-PyTorch difference on random inputs, and
        the SHA-256 of the EMA weights (also stored in the metadata).

    Raises
    ------
    TilesrError
        If the output exists (without ``overwrite``), the checkpoint is unusable, the
        opset is unsupported, or ONNX Runtime disagrees with PyTorch beyond 1e-3.
    """
    out_path = Path(out_path)
    max_opset = _max_opset()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= max_opset:
        raise TilesrError(f"opset must be an integer in [{MIN_OPSET}, {max_opset}], got {opset!r}")
    if out_path.exists() and not overwrite:
        raise TilesrError(f"{out_path} already exists; pass --overwrite to replace it")
    if out_path.is_dir():
        raise TilesrError(f"{out_path} is a folder, not a file name")
    if not out_path.parent.is_dir():
        raise TilesrError(f"output folder does not exist: {out_path.parent}")

    ckpt = load_checkpoint(checkpoint_path)
    model = build_model(ckpt, ema=True, source=str(checkpoint_path))
    metadata = ModelMetadata.from_dict(dict(ckpt.metadata), source=str(checkpoint_path))
    check_size_multiple(metadata, model.size_multiple, str(checkpoint_path))
    digest = weights_sha256(model.state_dict())
    metadata = replace(metadata, weights_sha256=digest, tilesr_version=__version__)
    if defaults:  # sampling defaults and calibration chosen after training
        unknown = sorted(set(defaults) - set(AFTER_TRAINING))
        if unknown:
            raise TilesrError(f"export defaults cannot set {unknown} (only {AFTER_TRAINING})")
        metadata = replace(metadata, **defaults)
    model = engine_network(model, metadata, str(checkpoint_path))

    tmp = temp_sibling(out_path)
    try:
        _trace_to_onnx(model, metadata, tmp, opset)
        _add_metadata(tmp, metadata)
        max_diff = _check_parity(model, metadata, tmp, source=str(out_path))
        if not max_diff <= PARITY_TOLERANCE:  # also catches NaN
            raise TilesrError(
                f"ONNX Runtime and PyTorch disagree by {max_diff:.3g} (> {PARITY_TOLERANCE}); "
                f"{out_path} was not written"
            )
        _fsync(tmp)
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return ExportReport(path=out_path, max_abs_diff=max_diff, weights_sha256=digest)


def export_defaults(config_path: str | Path) -> dict[str, Any]:
    """The :data:`AFTER_TRAINING` keys of a training config's ``export`` section."""
    import dataclasses

    from tilesr.training.config import load_export_section

    export_section, training = load_export_section(config_path)
    export = dataclasses.asdict(export_section)
    keys: tuple[str, ...] = AFTER_TRAINING
    if training.objective == "regression":  # one evaluation: no sampling to choose
        keys = tuple(k for k in keys if k not in REGRESSION_SAMPLING)
    chosen = {k: export[k] for k in keys}
    if chosen["target_optics"] is None:  # not set: the checkpoint's (or none) stands
        del chosen["target_optics"]
    return chosen


def _max_opset() -> int:
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    except ImportError:  # private constant; fall back to what torch 2.x supports
        return 20
    return int(ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)


def _trace_to_onnx(model: UNet, metadata: ModelMetadata, path: Path, opset: int) -> None:
    """Legacy (TorchScript) exporter: the dynamo one needs onnxscript, not a dependency."""
    m = model.size_multiple
    generator = torch.Generator().manual_seed(0)
    # batch 2 and a non-square size, so no dimension can be mistaken for another
    example = (
        torch.randn(2, 1, 2 * m, 3 * m, generator=generator),
        torch.randn(2, 1, 2 * m, 3 * m, generator=generator),
        torch.tensor([1.0, 2.0]),
    )
    image_axes = {0: "batch", 2: "height", 3: "width"}
    names = (metadata.input_noisy, metadata.input_cond, metadata.input_timestep)
    with warnings.catch_warnings():
        # the legacy exporter's deprecation notice, and GroupNorm's training-time batch
        # check seen by the tracer; dynamic shapes are verified by _check_parity instead
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=list(names),
            output_names=[metadata.output],
            dynamic_axes={
                metadata.input_noisy: image_axes,
                metadata.input_cond: image_axes,
                metadata.input_timestep: {0: "batch"},
                metadata.output: image_axes,
            },
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _add_metadata(path: Path, metadata: ModelMetadata) -> None:
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata.to_props())
    proto.producer_name = "tilesr"
    proto.producer_version = __version__
    proto.doc_string = f"tilesr {metadata.objective} model ({metadata.prediction} prediction)"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise TilesrError(
            f"the exported graph does not pass onnx.checker: {first_line(exc)}"
        ) from None
    onnx.save(proto, str(path))


def _check_parity(model: UNet, metadata: ModelMetadata, path: Path, *, source: str) -> float:
    """Largest |ORT - torch| over batches 1 and 3 and two image sizes."""
    import onnxruntime as ort

    from tilesr.denoisers.onnx_backend import read_metadata

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    read_metadata(session, source)  # the engine must accept what we wrote
    m = model.size_multiple
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, height, width in ((1, metadata.tile_size, metadata.tile_size), (3, 2 * m, 3 * m)):
        noisy = rng.standard_normal((batch, 1, height, width), dtype=np.float32)
        cond = rng.uniform(-1, 1, (batch, 1, height, width)).astype(np.float32)
        t = rng.integers(0, metadata.schedule.timesteps, batch).astype(np.float32)
        feeds = {metadata.input_noisy: noisy, metadata.input_cond: cond, metadata.input_timestep: t}
        graph_inputs = {i.name for i in session.get_inputs()}
        feeds = {k: v for k, v in feeds.items() if k in graph_inputs}  # regression: cond only
        (eps_ort,) = session.run([metadata.output], feeds)
        with torch.inference_mode():
            eps_torch = model(torch.from_numpy(noisy), torch.from_numpy(cond), torch.from_numpy(t))
        if eps_ort.shape != tuple(eps_torch.shape):
            raise TilesrError(
                f"exported graph returned shape {eps_ort.shape} for input "
                f"{noisy.shape}; expected {tuple(eps_torch.shape)}"
            )
        diff = float(np.max(np.abs(eps_ort - eps_torch.numpy())))
        worst = max(worst, diff) if np.isfinite(diff) else float("inf")
    return worst


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
