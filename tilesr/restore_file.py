"""File to file: read an image lazily, restore it block by block, write a resumable OME-Zarr.

``restore_file`` is what ``tilesr restore`` runs. The order of work matters for large
inputs: everything that can be refused cheaply (options, paths, the model, the plan, an
existing output) is checked before any pixel is read; then one pass checks for
non-finite values (floating point input only), one strided pass finds the intensity
range, and finally each output block is computed once and written with its uncertainty.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilesr.errors import TilesrError
from tilesr.options import RestoreOptions

if TYPE_CHECKING:
    import dask.array as da

    from tilesr.denoisers.base import Denoiser
    from tilesr.engine.model import EngineModel
    from tilesr.engine.plan import RestorePlan
    from tilesr.engine.restore import RestoreResult
    from tilesr.io import InputImage
    from tilesr.io.restored import OutputState, WriteReport
    from tilesr.progress import Progress

#: where a bundled default model is looked up when ``model`` is None
DEFAULT_MODEL = Path(__file__).resolve().parent / "bundled" / "default.onnx"


@dataclass(frozen=True)
class RestoreReport:
    """What :func:`restore_file` did.

    Attributes
    ----------
    input_path, output_path
        The files read and written.
    input_shape, output_shape
        Shapes of the input level and of the output (with an uncertainty, its c axis
        holds the restoration's channels, then the uncertainty's).
    axes
        Axes of the output (the input's, in NGFF order, and c with an uncertainty).
    chunks_total, chunks_written, chunks_skipped
        Output blocks in all, computed by this run, and finished by an earlier one.
    seconds
        Wall time of the call.
    status
        ``"written"``, ``"resumed"`` or ``"already complete"`` (resume of a finished output).
    parts
        With an uncertainty, how the c axis divides (e.g. ``c: restored 0, uncertainty 1``).
    """

    input_path: str
    output_path: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    axes: str
    chunks_total: int
    chunks_written: int
    chunks_skipped: int
    seconds: float
    status: str
    parts: str = ""

    def summary(self) -> str:
        """One line for the command line."""
        shape = "x".join(str(n) for n in self.output_shape)
        if self.status == "already complete":
            return f"{self.output_path} is already complete ({self.axes} {shape}); nothing to do"
        skipped = f", {self.chunks_skipped} already done" if self.chunks_skipped else ""
        return (
            f"restored {self.input_path} -> {self.output_path} ({self.axes} {shape}{self.parts}, "
            f"{self.chunks_written} block(s) written{skipped}) in {self.seconds:.1f} s"
        )


def restore_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    options: RestoreOptions | None = None,
    *,
    model: str | os.PathLike[str] | Denoiser | EngineModel | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> RestoreReport:
    """Restore an image file into a multiscale OME-Zarr (with uncertainty and provenance).

    Parameters
    ----------
    input_path
        OME-Zarr, zarr or TIFF image (see :func:`tilesr.io.open_image`).
    output_path
        Output OME-Zarr folder; layout in :mod:`tilesr.io.restored`.
    options
        What to restore and how (:class:`~tilesr.options.RestoreOptions`, including the
        file options: the input's ``axes`` and ``level``, ``nan_policy``, the output
        ``dtype`` and ``zarr_format``); None: every default.
    model
        Exported ``.onnx`` model, a Denoiser or a model already opened
        (:func:`tilesr.engine.model.open_model`); None: the bundled default model.
    scheduler
        None (local threads), ``"local-cluster:N"`` or a dask scheduler address.
    overwrite
        Replace an existing output (removed only when writing starts).
    resume
        Continue an interrupted output made with the same model, options and input.
    progress
        Show a progress bar.

    Returns
    -------
    RestoreReport
        Paths, shapes, blocks written and skipped, time taken.

    Raises
    ------
    TilesrError
        For unreadable input, bad options, a refused output path, a settings mismatch,
        an output another live run is writing (:mod:`tilesr.io.claim`), a model failing
        on the data, or a cluster that gave up on a block whose workers kept dying.
    """
    from tilesr.engine.model import open_model
    from tilesr.engine.plan import make_plan
    from tilesr.io import open_image
    from tilesr.io.claim import claimed
    from tilesr.progress import Progress

    start = time.perf_counter()
    options = options or RestoreOptions()
    # absolute once, before any graph is built: tasks open files by path on workers whose
    # working directory is not this process's (another machine, or a job's own folder)
    src, out = Path(input_path).absolute(), Path(output_path).absolute()
    _check_paths(src, out)
    model_ref = _model_or_bundled(model)
    image = open_image(src, axes=options.axes, level=options.level)
    opened = open_model(model_ref, options, scheduler=scheduler)
    bar = Progress(unit="network evaluation") if progress else None
    shape = tuple(int(n) for n in image.data.shape)
    plan = make_plan(replace(options, axes=image.axes), opened, shape, progress=bar)
    job = _Job(src, image, opened, plan, _fingerprint(plan, opened, image), scheduler)
    # one writer per output: a second run refuses here, naming the first
    with claimed(out):
        try:
            written, complete = _write_output(job, out, overwrite=overwrite, resume=resume)
        except KeyboardInterrupt:
            # an interrupt that came once the output was finished (while the cluster's
            # connection closed, say) changes nothing: report the finished output
            written, complete = _finished_or_raise(job, out), False
        except Exception as exc:
            if not _cluster_gave_up(exc):
                raise
            raise TilesrError(
                f"the cluster gave up on a block whose workers kept dying ({exc}); "
                f"{output_path} is not finished: continue it with --resume"
            ) from None
    return _report(input_path, output_path, shape, written, start, complete=complete)


@dataclass(frozen=True)
class _Job:
    """One restoration, planned: what :func:`_restore_and_write` runs."""

    src: Path
    image: InputImage
    model: EngineModel
    plan: RestorePlan
    fingerprint: dict[str, Any]
    scheduler: str | None


def _write_output(
    job: _Job, out: Path, *, overwrite: bool, resume: bool
) -> tuple[WriteReport, bool]:
    """Decide what writing ``out`` means, then do it; the report and whether it was done.

    Decided once, before any pass over the input: a finished output costs nothing more.
    A TIFF output is restored into its working store, then exported (:mod:`tilesr.io.ome_tiff`).
    """
    from tilesr.io import ome_tiff
    from tilesr.io.ome_writer import remove_store
    from tilesr.io.restored import OutputState, finished_report, output_state

    if not ome_tiff.is_tiff_output(out):
        state = output_state(out, job.fingerprint, overwrite=overwrite, resume=resume)
        if state is OutputState.COMPLETE:
            return finished_report(out), True
        return _restore_and_write(job, out, state), False
    decision = ome_tiff.tiff_output_state(out, job.fingerprint, overwrite=overwrite, resume=resume)
    store = ome_tiff.working_store(out)
    if decision.finished:
        if store.exists():  # left by a run stopped between its rename and this clean-up
            remove_store(store)
        return ome_tiff.finished_tiff_report(out), True
    if decision.state is OutputState.COMPLETE:  # restored; the export was interrupted
        written = finished_report(store)
    else:
        written = _restore_and_write(job, store, decision.state)
    levels = ome_tiff.export_ome_tiff(store, out)
    remove_store(store)
    return replace(written, path=str(out), levels=levels), False


def _cluster_gave_up(exc: Exception) -> bool:
    """Whether dask.distributed stopped retrying a task after its workers died (more than
    ``distributed.scheduler.allowed-failures`` times): the blocks written so far stand."""
    kind = type(exc)
    return kind.__name__ == "KilledWorker" and kind.__module__.startswith("distributed")


def _finished_or_raise(job: _Job, out: Path) -> WriteReport:
    """After an interrupt: the report of ``out`` if it is finished with this run's settings
    (the engine is deterministic: then it holds this run's bytes), else the interrupt."""
    import sys

    from tilesr.io import ome_tiff
    from tilesr.io.restored import OutputState, finished_report, output_state

    interrupt = sys.exc_info()[1]
    try:
        if ome_tiff.is_tiff_output(out):
            if ome_tiff.tiff_output_state(out, job.fingerprint, resume=True).finished:
                return ome_tiff.finished_tiff_report(out)
        elif output_state(out, job.fingerprint, resume=True) is OutputState.COMPLETE:
            return finished_report(out)
    except TilesrError:
        pass  # not there, or not this run's: not finished
    assert interrupt is not None  # called in an except block
    raise interrupt


def _restore_and_write(job: _Job, out: Path, state: OutputState) -> WriteReport:
    """The passes over the input, then every block computed once and written."""
    from tilesr.engine.restore import restore_planned
    from tilesr.engine.scheduling import scheduler_context
    from tilesr.io.restored import write_restored

    src, image, model, plan = job.src, job.image, job.model, job.plan
    with scheduler_context(job.scheduler):
        data = _handle_non_finite(image.data, plan.options.nan_policy, source=str(src))
        result = restore_planned(data, model, plan)
        intensity = [result.intensity_range.low, result.intensity_range.high]
        write = partial(
            write_restored,
            out,
            result.image,
            result.uncertainty,
            state=state,
            axes=image.axes,
            pixel_sizes={
                a: (s / plan.scale if a in "yx" else s) for a, s in image.pixel_sizes.items()
            },
            translation=output_translation(image, plan.scale),
            intensity=(result.intensity_range.low, result.intensity_range.high),
            units=image.units,
            dtype=image.data.dtype if plan.options.dtype == "input" else "float32",
            zarr_format=plan.options.zarr_format,
            # what only the pixels tell, checked before a resumed output is continued
            fingerprint={**job.fingerprint, "intensity_range": intensity},
            provenance=_provenance(src, image, model, result),
        )
        if plan.progress is None:
            return write()
        with plan.progress.shown(result.tiles, scale=plan.evaluations_per_tile):
            return write(on_skip=partial(_advance, plan.progress, result.block_tiles))


def output_translation(image: InputImage, scale: int) -> dict[str, float]:
    """Where the centre of the output's first pixel lies, in the input's physical space.

    The bicubic upsampling is ``align_corners=False`` (as in training): output pixel
    ``j`` is centred at input pixel coordinate ``(j + 0.5) / scale - 0.5``, so the first
    one sits ``0.5 / scale - 0.5`` input pixels from the input's first pixel centre (a
    quarter pixel up and left at 2x). The input's own translation (its stage position)
    comes first.
    """
    origin = {a: float(image.translation.get(a, 0.0)) for a in image.axes if a != "c"}
    for axis in "yx":
        size = float(image.pixel_sizes.get(axis, 1.0))
        origin[axis] += (0.5 / scale - 0.5) * size
    return {a: t for a, t in origin.items() if t}


def _fingerprint(plan: RestorePlan, model: EngineModel, image: InputImage) -> dict[str, Any]:
    """What a resumed run must match (the input's intensity range is added once known)."""
    return {
        "input_shape": list(image.data.shape),
        "input_dtype": str(image.data.dtype),
        "model_file_sha256": model.file_sha256,
        "model_weights_sha256": model.weights_sha256,
        **plan.record(),
    }


def _provenance(
    src: Path, image: InputImage, model: EngineModel, result: RestoreResult
) -> dict[str, Any]:
    """The tilesr attributes of the output besides its status and fingerprint."""
    from tilesr import __version__

    intensity = result.intensity_range
    return {
        "version": __version__,
        "input": str(src.resolve()),
        "input_kind": image.kind,
        "model": model.name,
        "model_file_sha256": model.file_sha256,
        "model_weights_sha256": model.weights_sha256,
        "settings": result.plan.record(),
        "tiles": result.tiles,
        "intensity_range": [intensity.low, intensity.high],
        "chunks_total": math.prod(result.image.numblocks),
    }


def _advance(
    progress: Progress, block_tiles: Mapping[tuple[int, ...], int], finished: list[tuple[int, ...]]
) -> None:
    """Blocks an earlier run finished count as done on the bar (by their tiles)."""
    progress.update(float(sum(block_tiles.get(idx, 0) for idx in finished)))


def _check_paths(src: Path, out: Path) -> None:
    """Refuse outputs that would overwrite or nest inside the input, and vice versa."""
    if not src.exists():
        raise TilesrError(f"input {str(src)!r} does not exist")
    src_r, out_r = src.resolve(), out.resolve()
    if out_r == src_r:
        raise TilesrError(f"output {out} is the input itself")
    if src_r in out_r.parents:
        raise TilesrError(f"output {out} lies inside the input {src}; choose another path")
    if out_r in src_r.parents:
        raise TilesrError(f"input {src} lies inside the output {out}; choose another path")


def _model_or_bundled(model: str | os.PathLike[str] | Denoiser | EngineModel | None) -> Any:
    """The model as given (a path must be a file), or the bundled default model."""
    if model is None:
        if not DEFAULT_MODEL.exists():
            raise TilesrError("no model given and no bundled default model; pass --model M.onnx")
        return str(DEFAULT_MODEL)
    if isinstance(model, str | os.PathLike):
        if not Path(model).is_file():
            raise TilesrError(f"model {str(model)!r} does not exist")
        return str(Path(model).absolute())
    return model


def _handle_non_finite(data: da.Array, policy: str, *, source: str) -> da.Array:
    """Refuse or replace NaN/inf pixels of floating-point input (one pass over the input)."""
    import dask
    import dask.array as da
    import numpy as np

    if data.dtype.kind != "f":
        return data  # integers cannot hold NaN or inf
    finite = da.isfinite(data)
    if policy == "refuse":
        bad = int((~finite).sum().compute())
        if bad:
            raise TilesrError(
                f"{source} holds {bad} NaN or infinite pixel(s); pass --nan-policy zero or "
                "--nan-policy mean to replace them"
            )
        return data
    if policy == "zero":
        return da.where(finite, data, 0).astype(data.dtype)
    total, count = dask.compute(da.where(finite, data, 0).sum(dtype=np.float64), finite.sum())
    fill = float(total) / int(count) if count else 0.0
    return da.where(finite, data, fill).astype(data.dtype)


def _report(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    input_shape: tuple[int, ...],
    written: WriteReport,
    start: float,
    *,
    complete: bool = False,
) -> RestoreReport:
    """The report of a run from what the writer did (or found already done), with the
    paths as the caller named them."""
    from tilesr.io.layout import RESTORED, UNCERTAINTY

    status = "resumed" if written.chunks_skipped else "written"
    layout = written.layout
    parts = ""
    if layout.uncertainty:
        restored, unc = (layout.part_channels(p) for p in (RESTORED, UNCERTAINTY))
        parts = f"; c: restored {_span(restored)}, uncertainty {_span(unc)}"
    if complete:
        status = "already complete"
    return RestoreReport(
        input_path=os.fspath(src),
        output_path=os.fspath(out),
        input_shape=tuple(int(n) for n in input_shape),
        output_shape=written.shape,
        axes=written.layout.axes,
        chunks_total=written.chunks_total,
        chunks_written=written.chunks_written,
        chunks_skipped=written.chunks_skipped,
        seconds=time.perf_counter() - start,
        status=status,
        parts=parts,
    )


def _span(indices: list[int]) -> str:
    return str(indices[0]) if len(indices) == 1 else f"{indices[0]}-{indices[-1]}"
