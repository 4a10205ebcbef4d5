"""The network the engine runs, opened once: a Denoiser and what is known about where it runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tilesr.denoisers.base import Denoiser
from tilesr.errors import TilesrError, first_line
from tilesr.io.checksum import file_sha256
from tilesr.metadata import ModelMetadata
from tilesr.options import RestoreOptions

#: tile-samples per network call by default: a GPU wants larger batches than a CPU
DEFAULT_BATCH = {"CUDAExecutionProvider": 32}
CPU_BATCH = 8


@dataclass(frozen=True)
class EngineModel:
    """A model opened for restoration.

    Attributes
    ----------
    denoiser
        The network (an :class:`~tilesr.denoisers.onnx_backend.OnnxDenoiser` for a file).
    name
        The ``.onnx`` path, or the Denoiser's class for one given as an object.
    provider
        The ONNX Runtime execution provider that runs it, None for a Denoiser that is not
        an ONNX Runtime session.
    threads
        ONNX Runtime intra-op threads the session was opened with (None: ORT's default).
    file_sha256
        sha256 of the ``.onnx`` file (None for a Denoiser object).
    """

    denoiser: Denoiser
    name: str
    provider: str | None = None
    threads: int | None = None
    file_sha256: str | None = None

    @property
    def metadata(self) -> ModelMetadata:
        return self.denoiser.metadata

    @property
    def weights_sha256(self) -> str | None:
        """sha256 of the weights, as the exporter recorded it in the metadata."""
        return self.metadata.weights_sha256 or None

    @property
    def from_file(self) -> bool:
        return self.file_sha256 is not None

    def default_batch_size(self) -> int:
        """Tile-samples per network call for the provider that actually runs the model."""
        return DEFAULT_BATCH.get(self.provider or "", CPU_BATCH)


def open_model(
    model: str | os.PathLike[str] | Denoiser | EngineModel,
    options: RestoreOptions | None = None,
    *,
    scheduler: str | None = None,
) -> EngineModel:
    """Open an ``.onnx`` file (one ONNX Runtime session per process) or wrap a Denoiser.

    Parameters
    ----------
    model
        The file, a Denoiser, or a model opened already (returned as it is).
    options
        What the session is opened with: ``threads`` (None: the cores divided by the
        workers of ``scheduler``, see :func:`tilesr.engine.scheduling.worker_threads`)
        and ``device``.
    scheduler
        The scheduler the blocks will run on (as ``scheduler_context`` takes it).
    """
    if isinstance(model, EngineModel):
        return model
    if isinstance(model, str | os.PathLike):
        from tilesr.denoisers.onnx_backend import OnnxDenoiser
        from tilesr.engine.scheduling import worker_threads

        options = options or RestoreOptions()
        threads = options.threads or worker_threads(scheduler)
        # absolute: the session is reopened by path on workers with another working folder
        denoiser = OnnxDenoiser(Path(model).absolute(), threads=threads, device=options.device)
        sha = file_sha256(Path(denoiser.path))
        return EngineModel(denoiser, os.fspath(model), denoiser.provider, threads, sha)
    if not isinstance(model, Denoiser):
        raise TilesrError(
            f"model must be a path to an .onnx file or a Denoiser, got {type(model).__name__}"
        )
    return EngineModel(model, f"{type(model).__module__}.{type(model).__name__}")


def probe(model: EngineModel, tile: int) -> None:
    """One network call on a blank tile: a model that cannot run fails here, in one line.

    A file's graph is untrusted: better refused now than inside a block task.
    """
    zeros = np.zeros((1, 1, tile, tile), dtype=np.float32)
    t = np.full((1,), model.metadata.schedule.timesteps - 1, dtype=np.float32)
    try:
        out = np.asarray(model.denoiser.predict(zeros, zeros, t))
    except TilesrError:
        raise  # already one line naming the model (OnnxDenoiser checks every call)
    except Exception as exc:  # another Denoiser's own errors (shapes, types, memory)
        raise TilesrError(
            f"{model.name} fails on a {tile}x{tile} tile: {type(exc).__name__} {first_line(exc)}"
        ) from None
    if out.shape != zeros.shape:
        raise TilesrError(
            f"{model.name} returns shape {out.shape} for a tile of shape {zeros.shape}"
        )
    if not np.isfinite(out).all():
        raise TilesrError(f"{model.name} returns non-finite values for a blank tile")
