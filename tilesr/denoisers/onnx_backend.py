"""ONNX Runtime backend: the engine's denoiser, free of torch.

Sessions are created lazily from the model path and cached per process, so a denoiser
pickles as a path (ORT sessions do not pickle) and each dask worker builds its session
once.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tilesr.errors import TilesrError, check_choice, first_line
from tilesr.metadata import ModelMetadata

# One ORT session per (file, threads, device) and process: sessions do not pickle, and
# building one per block task would cost seconds each. A cache, not state: a session is
# a pure function of its key.
_CACHE: dict[tuple[Any, ...], Any] = {}
_CACHE_LOCK = threading.Lock()
_LOG = logging.getLogger("tilesr")
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
#: most tiles per ``session.run`` on the CPU: larger batches are run in calls of this many
#: (each tile's result does not depend on the batch). The activations of more than about
#: 8 tiles of 128^2 outgrow the caches and the network runs slower per tile (batch 32:
#: 0.77 of the GEMM rate against 0.92 at batch 8 on a quiet 2-core EPYC; docs/benchmarks.md)
CPU_CALL_TILES = 8


def installed_runtimes() -> list[str]:
    """The ONNX Runtime distributions installed here (more than one shadow each other)."""
    import importlib.metadata as md

    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    return found


def providers_for(device: str) -> tuple[str, ...]:
    """ONNX Runtime providers for ``device``: ``auto`` takes CUDA when this ORT has it."""
    import onnxruntime as ort

    check_choice("device", device, DEVICES)
    have = ort.get_available_providers()
    runtimes = tuple(installed_runtimes())
    if len(runtimes) > 1 and device != "cpu":
        _warn_shadowed(runtimes)
    if device == "cuda" and CUDA not in have:
        raise TilesrError(
            f"--device cuda: this ONNX Runtime ({ort.__version__}) has no CUDA provider "
            f"(it has {', '.join(have)}); install tilesr-gpu (packaging/tilesr-gpu) in an "
            "environment without the CPU package onnxruntime"
        )
    if device == "cpu" or CUDA not in have:
        return (CPU,)
    return (CUDA, CPU)


@functools.cache  # once per process, not once per block task
def _warn_shadowed(runtimes: tuple[str, ...]) -> None:
    _LOG.warning(
        "%s are both installed and shadow each other (the CUDA provider may be lost); "
        "keep one: pip uninstall -y onnxruntime onnxruntime-gpu, then install tilesr-gpu "
        "or onnxruntime-gpu alone",
        " and ".join(runtimes),
    )


def _session(path: str, threads: int | None, device: str) -> Any:
    import onnxruntime as ort

    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size, threads, device)
    with _CACHE_LOCK:
        session = _CACHE.get(key)
        if session is None:
            session = _new_session(ort, path, threads, providers_for(device))
            if device != "cpu" and CUDA not in session.get_providers():
                _cuda_did_not_start(device, path)
            _CACHE[key] = session
        return session


def session_options(ort: Any, threads: int | None) -> Any:
    """The ``SessionOptions`` every tilesr session runs with (tools profile with them too)."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # idle intra-op threads sleep instead of spinning between operators and calls: on a
    # shared or busy machine a spinning thread takes the cores the others need, and ORT's
    # threads wait for each other at every operator (batch 8 as fast either way when quiet)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # fatal only: ORT's own error lines (a failed allocation, say) would come beside the
    # one-line error tilesr raises, which carries their first line
    options.log_severity_level = 4
    return options


def _new_session(ort: Any, path: str, threads: int | None, providers: tuple[str, ...]) -> Any:
    options = session_options(ort, threads)
    # a CUDA provider that cannot load (no driver, missing CUDA libraries) logs a wall of
    # errors through ORT's default logger before it falls back; say it once ourselves
    ort.set_default_logger_severity(4)
    try:
        with warnings.catch_warnings():  # ORT's own warning about a missing provider
            warnings.simplefilter("ignore", UserWarning)
            return ort.InferenceSession(path, options, providers=list(providers))
    except Exception as exc:  # ORT raises its own untyped errors for bad files
        raise TilesrError(f"{path} is not a loadable ONNX model: {first_line(exc)}") from None


def _cuda_did_not_start(device: str, path: str) -> None:
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return  # a CPU-only ONNX Runtime: nothing was tried
    message = (
        "the CUDA provider of ONNX Runtime could not start on this machine (no NVIDIA "
        "driver or CUDA/cuDNN libraries found)"
    )
    if device == "cuda":
        raise TilesrError(f"--device cuda: {message}; use --device cpu or auto")
    _LOG.warning("%s; restoring on the CPU", message)


def read_metadata(session: Any, source: str) -> ModelMetadata:
    """Parse and check the tilesr metadata of an ORT session against its graph."""
    props = dict(session.get_modelmeta().custom_metadata_map)
    meta = ModelMetadata.from_props(props, source=source)
    inputs = {i.name: i for i in session.get_inputs()}
    wanted = {meta.input_noisy: 4, meta.input_cond: 4, meta.input_timestep: 1}
    if meta.objective == "regression":
        # a regression network reads the conditioning image only (the exporter drops
        # the inputs it ignores)
        wanted = {meta.input_cond: 4}
    for name, rank in wanted.items():
        if name not in inputs:
            raise TilesrError(
                f"{source}: the graph has no input named {name!r} (has {sorted(inputs)})"
            )
        shape = inputs[name].shape
        if len(shape) != rank:
            raise TilesrError(f"{source}: input {name!r} must have rank {rank}, has shape {shape}")
        if rank == 4 and shape[1] not in (1, "1") and not isinstance(shape[1], str):
            raise TilesrError(f"{source}: input {name!r} must have 1 channel, has shape {shape}")
    if len(inputs) != len(wanted):
        raise TilesrError(f"{source}: unexpected graph inputs {sorted(set(inputs) - set(wanted))}")
    outputs = [o.name for o in session.get_outputs()]
    if meta.output not in outputs:
        raise TilesrError(
            f"{source}: the graph has no output named {meta.output!r} (has {outputs})"
        )
    return meta


@dataclass
class OnnxDenoiser:
    """A :class:`~tilesr.denoisers.base.Denoiser` running an exported model in ONNX Runtime.

    Parameters
    ----------
    path
        The ``.onnx`` file; everything else comes from its metadata.
    threads
        ONNX Runtime intra-op threads (None: ORT's default, all cores).
    device
        ``auto`` (CUDA when this ONNX Runtime has it and it starts, else the CPU, with
        one logged line if CUDA failed to start), ``cpu`` or ``cuda`` (an error when
        CUDA is unavailable).
    """

    path: str | Path
    threads: int | None = None
    device: str = "auto"
    metadata: ModelMetadata = field(init=False)

    def __post_init__(self) -> None:
        self.path = str(Path(self.path).resolve())
        if not Path(self.path).is_file():
            raise TilesrError(f"model file not found: {self.path}")
        providers_for(self.device)  # refuse an impossible device before anything else
        self.metadata = read_metadata(self.session, self.path)

    @property
    def session(self) -> Any:
        return _session(str(self.path), self.threads, self.device)

    @property
    def provider(self) -> str:
        """The ONNX Runtime provider that runs the network in this process."""
        return str(self.session.get_providers()[0])

    def predict(
        self, noisy: NDArray[np.float32], cond: NDArray[np.float32], t: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        meta = self.metadata
        session = self.session
        step = CPU_CALL_TILES if session.get_providers()[0] == CPU else len(cond)
        outputs = []
        for b0 in range(0, max(len(cond), 1), max(step, 1)):
            part = slice(b0, b0 + step)
            feeds = {meta.input_cond: np.ascontiguousarray(cond[part], dtype=np.float32)}
            if meta.objective != "regression":
                feeds[meta.input_noisy] = np.ascontiguousarray(noisy[part], dtype=np.float32)
                feeds[meta.input_timestep] = np.ascontiguousarray(t[part], dtype=np.float32)
            outputs.append(self._run(session, feeds, len(cond[part])))
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _run(self, session: Any, feeds: dict[str, NDArray[np.float32]], tiles: int) -> Any:
        """One session call; a failure or a non-finite output is one line naming the model.

        The blank-tile probe before planning catches models that cannot run at all; this
        catches the ones that fail on some data only (ORT's errors are untyped).
        """
        name = Path(self.path).name
        try:
            out = np.asarray(session.run([self.metadata.output], feeds)[0], dtype=np.float32)
        except Exception as exc:
            raise TilesrError(
                f"{name} failed on a batch of {tiles} tile(s): {type(exc).__name__} "
                f"{first_line(exc)}"
            ) from None
        if not np.isfinite(out).all():
            raise TilesrError(
                f"{name} returned non-finite values (NaN or inf) for a batch of {tiles} "
                "tile(s): the model does not work on this input"
            )
        return out

    def __getstate__(self) -> dict[str, Any]:
        # only the path and options travel; the worker rebuilds (and caches) the session
        return {
            "path": self.path,
            "threads": self.threads,
            "device": self.device,
            "metadata": self.metadata,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
