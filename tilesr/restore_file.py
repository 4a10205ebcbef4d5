"""File to file: read an image lazily, restore it block by block, write a resumable OME-Zarr.

``restore_file`` is what ``tilesr restore`` runs. The order of work matters for large
inputs: everything that can be refused cheaply (paths, options, an existing output) is
checked before any pixel is read; then one pass checks for non-finite values (floating
point input only), one strided pass finds the intensity range (inside :func:`restore`),
and finally each output block is computed once and written with its uncertainty.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilesr.errors import TilesrError

if TYPE_CHECKING:
    import dask.array as da

    from tilesr.denoisers.base import Denoiser
    from tilesr.io.restored import WriteReport

NAN_POLICIES = ("refuse", "zero", "mean")
OUTPUT_DTYPES = ("float32", "input")
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
        Shapes of the input level and of the restored image.
    axes
        Axes of both.
    chunks_total, chunks_written, chunks_skipped
        Output blocks in all, computed by this run, and finished by an earlier one.
    seconds
        Wall time of the call.
    status
        ``"written"``, ``"resumed"`` or ``"already complete"`` (resume of a finished output).
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

    def summary(self) -> str:
        """One line for the command line."""
        shape = "x".join(str(n) for n in self.output_shape)
        if self.status == "already complete":
            return f"{self.output_path} is already complete ({self.axes} {shape}); nothing to do"
        skipped = f", {self.chunks_skipped} already done" if self.chunks_skipped else ""
        return (
            f"restored {self.input_path} -> {self.output_path} ({self.axes} {shape}, "
            f"{self.chunks_written} block(s) written{skipped}) in {self.seconds:.1f} s"
        )


def restore_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | Denoiser | None = None,
    axes: str | None = None,
    level: int = 0,
    samples: int | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    seed: int = 0,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    block_size: int | None = None,
    fuse: str = "step",
    uncertainty: bool | None = None,
    skip_background: float | None = None,
    strength: float | None = None,
    nan_policy: str = "refuse",
    dtype: str = "float32",
    zarr_format: int = 3,
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
    model
        Exported ``.onnx`` model or a Denoiser; None: the bundled default model.
    axes, level
        Override the input's axes; pyramid level of the input to restore.
    samples, steps, sampler, seed, tile_size, overlap, batch_size, block_size, fuse, \
    skip_background, strength
        Passed to :func:`tilesr.engine.restore.restore`.
    uncertainty
        Also write the per-pixel std over samples; None: when more than one sample is
        taken (``samples``, or the model's default).
    nan_policy
        Non-finite input pixels: ``"refuse"`` (error), ``"zero"`` or ``"mean"`` (replace
        them by 0 or by the mean of the finite pixels). Costs one pass over float input.
    dtype
        ``"float32"`` or ``"input"`` (the input's pixel type, rounded and clipped).
    zarr_format
        3 (OME-NGFF 0.5) or 2 (OME-NGFF 0.4).
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
        For unreadable input, bad options, a refused output path or a settings mismatch.
    """
    from tilesr.io import open_image
    from tilesr.io.ome_writer import check_format
    from tilesr.io.restored import OutputState, finished_report, output_state

    start = time.perf_counter()
    if nan_policy not in NAN_POLICIES:
        raise TilesrError(
            f"nan policy must be one of {', '.join(NAN_POLICIES)}, got {nan_policy!r}"
        )
    if dtype not in OUTPUT_DTYPES:
        raise TilesrError(f"output dtype must be one of {', '.join(OUTPUT_DTYPES)}, got {dtype!r}")
    check_format(zarr_format)
    src, out = Path(input_path), Path(output_path)
    _check_paths(src, out)
    model_ref, model_sha = _resolve_model(model)
    image = open_image(src, axes=axes, level=level)
    meta = _model_metadata(model_ref)
    # the effective sampling (the model's defaults filled in) is what a resume must match
    samples = meta.samples if samples is None else samples
    steps = meta.steps if steps is None else steps
    sampler = meta.sampler if sampler is None else sampler
    with_unc = samples > 1 if uncertainty is None else bool(uncertainty)

    request = {
        "model_sha256": model_sha,
        "input_shape": list(image.data.shape),
        "input_dtype": str(image.data.dtype),
        "axes": image.axes,
        "level": level,
        "samples": samples,
        "steps": steps,
        "sampler": sampler,
        "seed": seed,
        "tile_size": tile_size,
        "overlap": overlap,
        "block_size": block_size,
        "fuse": fuse,
        "uncertainty": with_unc,
        "skip_background": skip_background,
        "strength": strength,
        "nan_policy": nan_policy,
        "dtype": dtype,
        "zarr_format": zarr_format,
    }
    # checked again with the engine's settings below; this early check spares a finished
    # or mismatched output the passes over the input
    state = output_state(out, request, overwrite=overwrite, resume=resume)
    if state is OutputState.COMPLETE:
        return _report(
            src, image.axes, tuple(image.data.shape), finished_report(out), start, complete=True
        )

    from tilesr.engine.progress import progress_context
    from tilesr.engine.restore import check_request_size, restore
    from tilesr.engine.scheduling import scheduler_context
    from tilesr.io.restored import write_restored

    # refuse an absurd shape before the passes over the input below, not after them
    check_request_size(
        tuple(image.data.shape),
        meta,
        tile_size=tile_size,
        overlap=overlap,
        block_size=block_size,
        fuse=fuse,
    )
    with scheduler_context(scheduler) as info:
        data = _handle_non_finite(image.data, nan_policy, source=str(src))
        result = restore(
            data,
            model_ref,
            axes=image.axes,
            samples=samples,
            steps=steps,
            sampler=sampler,
            seed=seed,
            tile_size=tile_size,
            overlap=overlap,
            batch_size=batch_size,
            block_size=block_size,
            fuse=fuse,
            uncertainty=with_unc,
            skip_background=skip_background,
            strength=strength,
            threads=info.threads_per_worker if isinstance(model_ref, str) else None,
        )
        scale = result.metadata.scale
        sizes = {a: (s / scale if a in "yx" else s) for a, s in image.pixel_sizes.items()}
        rng = result.intensity_range
        settings = {k: v for k, v in result.settings.items() if k != "tiles"}
        fingerprint = {**request, "settings": settings, "intensity_range": [rng.low, rng.high]}
        total = 1
        for n in result.image.numblocks:
            total *= n
        provenance = {
            "version": _version(),
            "input": str(src.resolve()),
            "input_kind": image.kind,
            "model": model_ref if isinstance(model_ref, str) else type(model_ref).__name__,
            "model_sha256": model_sha,
            "settings": result.settings,
            "intensity_range": [rng.low, rng.high],
            "chunks_total": total,
        }
        tiles = float(result.settings.get("tiles", 0))
        with progress_context(tiles, enabled=progress) as bar:

            def skipped(finished: list[tuple[int, ...]]) -> None:
                if bar is not None:
                    bar.update(float(sum(result.block_tiles.get(idx, 0) for idx in finished)))

            report = write_restored(
                out,
                result.image,
                result.uncertainty,
                axes=image.axes,
                pixel_sizes=sizes,
                units=image.units,
                dtype=image.data.dtype if dtype == "input" else "float32",
                zarr_format=zarr_format,
                fingerprint=fingerprint,
                provenance=provenance,
                overwrite=overwrite,
                resume=resume,
                on_skip=skipped,
            )
    return _report(src, image.axes, tuple(image.data.shape), report, start)


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


def _resolve_model(model: str | os.PathLike[str] | Denoiser | None) -> tuple[Any, str]:
    """The model as the engine takes it (a path string or a Denoiser) and its identity hash."""
    if model is None:
        if not DEFAULT_MODEL.exists():
            raise TilesrError("no model given and no bundled default model; pass --model M.onnx")
        model = DEFAULT_MODEL
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.is_file():
            raise TilesrError(f"model {str(path)!r} does not exist")
        return str(path), _file_sha256(path)
    meta = getattr(model, "metadata", None)
    sha = getattr(meta, "weights_sha256", "") or f"{type(model).__module__}.{type(model).__name__}"
    return model, sha


def _model_metadata(model: Any) -> Any:
    """The ModelMetadata of a model path (session cached for the engine) or Denoiser."""
    if isinstance(model, str):
        from tilesr.denoisers.onnx_backend import OnnxDenoiser

        return OnnxDenoiser(model, threads=1).metadata
    return model.metadata


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    src: Path,
    axes: str,
    input_shape: tuple[int, ...],
    written: WriteReport,
    start: float,
    *,
    complete: bool = False,
) -> RestoreReport:
    """The report of a run from what the writer did (or found already done)."""
    status = "resumed" if written.chunks_skipped else "written"
    if complete:
        status = "already complete"
    return RestoreReport(
        input_path=str(src),
        output_path=written.path,
        input_shape=tuple(int(n) for n in input_shape),
        output_shape=written.shape,
        axes=axes,
        chunks_total=written.chunks_total,
        chunks_written=written.chunks_written,
        chunks_skipped=written.chunks_skipped,
        seconds=time.perf_counter() - start,
        status=status,
    )


def _version() -> str:
    from tilesr import __version__

    return __version__
