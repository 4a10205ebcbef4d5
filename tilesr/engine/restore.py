"""``restore``: a lazy dask graph of independent output blocks, each sampled by fused tiles.

Layout. The output ``(..., Y*s, X*s)`` is cut into blocks of ``B x B`` HR pixels on a
global grid (the last block of each axis is shorter); output chunk ``(1, ..., 1, B, B)``
is block ``(plane, i, j)``. One task restores one block: it reads the LR window of the
block and its context from the input chunks it overlaps (its task depends on exactly
those chunk keys, so the input's chunking does not matter), reflects it beyond the image
edge, makes its conditioning (normalised with the global intensity range, upsampled with
the exact windowed bicubic, :mod:`tilesr.data.conditioning`), samples the canvas (every
tile of the global grid within the context of the block, see :mod:`tilesr.engine.canvas`)
and crops the block. Mean and standard deviation over the samples come out of the same
task as one stacked array.

Determinism. Tiles, noise and blend weights depend only on global coordinates, the
plane index and the seed, so a block is bit-identical whatever the input chunking, the
batch size and the ONNX Runtime thread count (its CPU kernels give per-item results
independent of both; tested with an exported U-Net), the number of workers, the
scheduler or a restart. The block size and the context do matter for a spatial network
under ``fuse="step"``: fusion couples all tiles of a canvas, so a canvas is not the
whole image; a context of one tile keeps the block edges away from the canvas edges.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tilesr.data.conditioning import conditioning
from tilesr.data.normalize import IntensityRange
from tilesr.data.resize import BICUBIC_MARGIN, bicubic_padding
from tilesr.denoisers.base import Denoiser
from tilesr.diffusion.uncertainty import predictive_std
from tilesr.engine.canvas import sample_canvas
from tilesr.engine.model import EngineModel, open_model, probe
from tilesr.engine.plan import RestorePlan, make_plan
from tilesr.engine.tiling import Span, TileWindow, block_spans, bounding_box, tile_grid
from tilesr.errors import TilesrError
from tilesr.metadata import ModelMetadata
from tilesr.options import RestoreOptions
from tilesr.progress import Progress, reporter_of

if TYPE_CHECKING:
    import dask.array as da

#: at most this many input pixels are read to find the global intensity percentiles
PERCENTILE_PIXELS = 4_000_000


@dataclass(frozen=True)
class RestoreResult:
    """A lazy restoration.

    Attributes
    ----------
    image
        float32 ``(..., Y*scale, X*scale)`` in raw intensity units, chunks ``(1, ..., 1, B, B)``.
    uncertainty
        Per-pixel standard deviation over the samples (raw units), same chunks; None
        unless the plan computes it. Computing ``image`` and ``uncertainty`` in one
        ``dask.compute`` or ``da.store`` call runs every block once.
    intensity_range
        The input intensities mapped to [-1, 1] (and back on output).
    plan
        What the engine runs: the effective options (every default filled in), the
        model's metadata and the provider running it.
    block_tiles
        Tiles sampled by each block, keyed by the block's chunk index
        ``(*lead_index, i, j)`` in ``image`` (a resumed run advances its progress bar
        by the blocks it skips).
    """

    image: da.Array
    uncertainty: da.Array | None
    intensity_range: IntensityRange
    plan: RestorePlan
    block_tiles: dict[tuple[int, ...], int] = field(default_factory=dict)

    @property
    def metadata(self) -> ModelMetadata:
        return self.plan.metadata

    @property
    def tiles(self) -> int:
        """Tiles all blocks sample (the total of a progress bar)."""
        return sum(self.block_tiles.values())


@dataclass(frozen=True)
class BlockJob:
    """Everything one block task needs to know besides the data, the plan and the model."""

    plane: int
    block: tuple[Span, Span]  # output pixels (global HR)
    canvas: tuple[Span, Span]  # sampled HR pixels (global; may pass the image edge)
    tiles: tuple[TileWindow, ...]
    lr_need: tuple[Span, Span]  # LR pixels the canvas needs (may pass the edge: reflected)
    lr_read: tuple[Span, Span]  # the part of lr_need's reflection read from the input
    lr_shape: tuple[int, int]  # the whole input plane


def global_intensity_range(
    image: da.Array, low: float, high: float, *, max_pixels: int = PERCENTILE_PIXELS
) -> IntensityRange:
    """Percentiles ``low``/``high`` of the whole input from a strided subsample.

    Every k-th pixel along y and x (all planes), with k chosen so that at most
    ``max_pixels`` are used: one range for the whole image, never one per tile (that
    would make seams), and the same whatever the chunking.
    """
    total = math.prod(image.shape)
    k = max(1, math.ceil(math.sqrt(total / max_pixels)))
    sub = np.asarray(image[..., ::k, ::k].compute(), dtype=np.float64)
    lo, hi = np.percentile(sub, [low, high])
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise TilesrError(f"the input holds non-finite values (percentiles {lo} and {hi})")
    return IntensityRange(float(lo), float(hi))


def _reflect_index(idx: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Mirror indices into [0, n) as the bicubic's own padding does (edge for tiny axes)."""
    if bicubic_padding(n) == "edge":
        return np.clip(idx, 0, n - 1)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m >= n, period - m, m)


def plan_block(
    plane: int,
    block: tuple[Span, Span],
    hr_shape: tuple[int, int],
    lr_shape: tuple[int, int],
    scale: int,
    tile_size: int,
    overlap: int,
    context: int,
) -> BlockJob:
    """Tiles, canvas and input window of one output block (``context`` HR pixels around it)."""
    region = (
        Span(block[0].start - context, block[0].stop + context),
        Span(block[1].start - context, block[1].stop + context),
    )
    tiles = tile_grid(hr_shape, tile_size, overlap, region=region)
    canvas = bounding_box(tiles)
    margin = BICUBIC_MARGIN if scale > 1 else 0
    need = tuple(Span(c.start // scale - margin, -(-c.stop // scale) + margin) for c in canvas)
    read = []
    for span, n in zip(need, lr_shape, strict=True):
        idx = _reflect_index(np.arange(span.start, span.stop), n)
        read.append(Span(int(idx.min()), int(idx.max()) + 1))
    return BlockJob(
        plane,
        block,
        canvas,
        tuple(tiles),
        (need[0], need[1]),
        (read[0], read[1]),
        lr_shape,
    )


def block_conditioning(
    lr: NDArray, job: BlockJob, scale: int, intensity: IntensityRange
) -> NDArray[np.float32]:
    """The conditioning image of a block's canvas from its LR read (edges reflected)."""
    rows = _reflect_index(np.arange(job.lr_need[0].start, job.lr_need[0].stop), job.lr_shape[0])
    cols = _reflect_index(np.arange(job.lr_need[1].start, job.lr_need[1].stop), job.lr_shape[1])
    window = np.asarray(lr)[np.ix_(rows - job.lr_read[0].start, cols - job.lr_read[1].start)]
    margin = BICUBIC_MARGIN if scale > 1 else 0
    cond = conditioning(window, scale, intensity, margin=margin)
    # ``cond`` starts at HR pixel (need.start + margin) * scale; the canvas may start later
    oy = job.canvas[0].start - (job.lr_need[0].start + margin) * scale
    ox = job.canvas[1].start - (job.lr_need[1].start + margin) * scale
    return cond[oy : oy + job.canvas[0].size, ox : ox + job.canvas[1].size]


def restore_block(
    lr: NDArray,
    job: BlockJob,
    plan: RestorePlan,
    intensity: IntensityRange,
    denoiser: Denoiser,
) -> NDArray[np.float32]:
    """One block task: (1 or 2, h, w) = mean [and uncertainty] over samples, raw units.

    The uncertainty is the predicted error std of the mean
    (:func:`tilesr.diffusion.uncertainty.predictive_std`, with the model's calibration),
    computed on the whole canvas before cropping, so its pooling sees the block's context.
    """
    report = reporter_of(plan.progress)
    cond = block_conditioning(lr, job, plan.scale, intensity)
    origin = (job.canvas[0].start, job.canvas[1].start)
    # shared: every plane draws the noise of plane 0 (no flicker through z)
    plane = job.plane if plan.options.plane_noise == "independent" else 0
    x0 = sample_canvas(denoiser, cond, origin, list(job.tiles), plan, plane=plane, report=report)
    block = (slice(None), job.block[0].slice(origin[0]), job.block[1].slice(origin[1]))
    out = [intensity.denormalize(x0[block].mean(axis=0))]
    if plan.options.uncertainty:
        meta = plan.metadata
        std = predictive_std(x0, scale=meta.uncertainty_scale, pool_px=meta.uncertainty_pool)
        out.append((std[block[1:]] * np.float32(intensity.span / 2.0)).astype(np.float32))
    report.flush()
    return np.stack(out).astype(np.float32)


def _input_refs(
    name: str,
    bounds: list[NDArray[np.int64]],
    lead_index: tuple[int, ...],
    read: tuple[Span, Span],
) -> tuple[list[list[tuple[Any, ...]]], tuple[tuple[int, ...], slice, slice]]:
    """Keys of the input chunks under a block's LR read window, and where it lies in them.

    Reading chunk keys directly (instead of slicing the dask array once per block)
    keeps building the graph of a whole slide fast; the window is the same either way.
    """
    lead_chunks, lead_offsets = [], []
    for k, b in zip(lead_index, bounds[:-2], strict=True):
        c = int(np.searchsorted(b, k, side="right")) - 1
        lead_chunks.append(c)
        lead_offsets.append(k - int(b[c]))
    ranges, cuts = [], []
    for span, b in zip(read, bounds[-2:], strict=True):
        c0 = int(np.searchsorted(b, span.start, side="right")) - 1
        c1 = int(np.searchsorted(b, span.stop - 1, side="right")) - 1
        ranges.append(range(c0, c1 + 1))
        cuts.append(span.slice(int(b[c0])))
    keys = [[(name, *lead_chunks, cy, cx) for cx in ranges[1]] for cy in ranges[0]]
    return keys, (tuple(lead_offsets), cuts[0], cuts[1])


def _block_task(
    chunks: list[list[NDArray]],
    *,
    where: tuple[tuple[int, ...], slice, slice],
    n_lead: int,
    **kwargs: Any,
) -> NDArray[np.float32]:
    """Assemble the LR window from its input chunks, restore the block, add the lead axes."""
    offsets, ys, xs = where
    window = np.block([[c[offsets] for c in row] for row in chunks])[ys, xs]
    out = restore_block(window, **kwargs)
    return out.reshape((out.shape[0], *(1,) * n_lead, *out.shape[1:]))


def as_image(image: Any) -> da.Array:
    """``image`` as a dask array of integers or floats with at least one pixel."""
    import dask.array as da

    if not isinstance(image, da.Array):
        image = da.asarray(image)
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TilesrError(f"image must hold integers or floats, got dtype {image.dtype}")
    if image.ndim < 2:
        raise TilesrError(f"image must have at least 2 dimensions (y, x), got {image.ndim}")
    if 0 in image.shape:
        raise TilesrError(f"image is empty, shape {image.shape}")
    return image


def restore(
    image: Any,
    model: str | os.PathLike[str] | Denoiser | EngineModel | None = None,
    options: RestoreOptions | None = None,
    *,
    intensity_range: IntensityRange | None = None,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore an image lazily: super-resolve and/or denoise it with a diffusion model.

    Parameters
    ----------
    image
        Dask (or NumPy) array ``(..., Y, X)`` of raw intensities; leading axes (z/c/t)
        are restored plane by plane. Any chunking: the result does not depend on it.
    model
        Path to an exported ``.onnx`` model, or any :class:`~tilesr.denoisers.Denoiser`;
        None: the bundled model (:func:`tilesr.bundled_model`).
    options
        Sampling, tiling, blocks and compute (:class:`~tilesr.options.RestoreOptions`;
        None: every default, most of them the model's). The file options (``level``,
        ``nan_policy``, ``dtype``, ``zarr_format``) apply to
        :func:`tilesr.restore_file.restore_file` only.
    intensity_range
        Raw intensities mapped to [-1, 1]; default the model's ``norm_low``/``norm_high``
        percentiles of the whole input (computed now, from a strided subsample).
    progress
        Where the block tasks report finished tiles (see :class:`tilesr.progress.Progress`).

    Returns
    -------
    RestoreResult
        Lazy ``image`` (and ``uncertainty``) with chunks ``(1, ..., 1, B, B)``, and the
        plan they follow.
    """
    image = as_image(image)
    options = options or RestoreOptions()
    if model is None:
        from tilesr import bundled_model

        model = bundled_model()
    opened = open_model(model, options)
    plan = make_plan(options, opened, tuple(image.shape), progress=progress)
    return restore_planned(image, opened, plan, intensity_range=intensity_range)


def restore_planned(
    image: da.Array,
    model: EngineModel,
    plan: RestorePlan,
    *,
    intensity_range: IntensityRange | None = None,
) -> RestoreResult:
    """:func:`restore` for a model already opened and a plan already made."""
    if model.from_file:
        probe(model, plan.tile_size)
    meta = plan.metadata
    intensity = intensity_range or global_intensity_range(image, meta.norm_low, meta.norm_high)
    stacked, block_tiles = _block_graph(image, model.denoiser, plan, intensity)
    return RestoreResult(
        image=stacked[0],
        uncertainty=stacked[1] if plan.options.uncertainty else None,
        intensity_range=intensity,
        plan=plan,
        block_tiles=block_tiles,
    )


def _block_graph(
    image: da.Array, denoiser: Denoiser, plan: RestorePlan, intensity: IntensityRange
) -> tuple[da.Array, dict[tuple[int, ...], int]]:
    """The stacked (mean [, std]) output array, one task per block, and each block's tiles."""
    import dask
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    scale, lead = plan.scale, tuple(int(n) for n in image.shape[:-2])
    lr_shape = (int(image.shape[-2]), int(image.shape[-1]))
    hr_shape = (lr_shape[0] * scale, lr_shape[1] * scale)
    n_out = 2 if plan.options.uncertainty else 1
    token = dask.base.tokenize(image.name, plan.options, plan.metadata, intensity, denoiser)
    name = f"tilesr-restore-{token}"
    bounds = [np.cumsum([0, *c]) for c in image.chunks]
    y_blocks = list(block_spans(hr_shape[0], plan.block_size))
    x_blocks = list(block_spans(hr_shape[1], plan.block_size))
    geometry = (hr_shape, lr_shape, scale, plan.tile_size, plan.overlap, plan.context)
    task = partial(_block_task, plan=plan, intensity=intensity, denoiser=denoiser, n_lead=len(lead))
    layer: dict[Any, Any] = {}
    block_tiles: dict[tuple[int, ...], int] = {}
    for p in range(math.prod(lead)):
        lead_index = tuple(int(k) for k in np.unravel_index(p, lead)) if lead else ()
        for i, by in enumerate(y_blocks):
            for j, bx in enumerate(x_blocks):
                job = plan_block(p, (by, bx), *geometry)
                block_tiles[(*lead_index, i, j)] = len(job.tiles)
                keys, where = _input_refs(image.name, bounds, lead_index, job.lr_read)
                layer[(name, 0, *lead_index, i, j)] = (partial(task, where=where, job=job), keys)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[image])  # type: ignore[list-item]
    chunks = (
        (n_out,),
        *((1,) * n for n in lead),
        tuple(b.size for b in y_blocks),
        tuple(b.size for b in x_blocks),
    )
    return da.Array(graph, name, chunks, dtype=np.float32), block_tiles
