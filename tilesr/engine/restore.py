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

import functools
import math
import operator
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tilesr.data.conditioning import conditioning
from tilesr.data.normalize import IntensityRange
from tilesr.data.resize import BICUBIC_MARGIN
from tilesr.denoisers.base import Denoiser
from tilesr.diffusion.consistency import make_consistent
from tilesr.diffusion.uncertainty import predictive_std
from tilesr.engine.blocks import (
    AxisBlock,
    BlockJob,
    BlockTiles,
    axis_blocks,
    plan_block,
    reflect_index,
)
from tilesr.engine.canvas import sample_canvas
from tilesr.engine.memory import return_freed_memory
from tilesr.engine.model import EngineModel, open_model, probe
from tilesr.engine.plan import RestorePlan, make_plan
from tilesr.engine.tiling import Span
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
        by the blocks it skips); computed from per-axis counts, not stored per block.
    """

    image: da.Array
    uncertainty: da.Array | None
    intensity_range: IntensityRange
    plan: RestorePlan
    block_tiles: BlockTiles

    @property
    def metadata(self) -> ModelMetadata:
        return self.plan.metadata

    @property
    def tiles(self) -> int:
        """Tiles all blocks sample (the total of a progress bar)."""
        return self.block_tiles.total


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


def block_conditioning(
    lr: NDArray, job: BlockJob, scale: int, intensity: IntensityRange
) -> NDArray[np.float32]:
    """The conditioning image of a block's canvas from its LR read (edges reflected)."""
    rows = reflect_index(np.arange(job.lr_need[0].start, job.lr_need[0].stop), job.lr_shape[0])
    cols = reflect_index(np.arange(job.lr_need[1].start, job.lr_need[1].stop), job.lr_shape[1])
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
    x0 = make_consistent(x0, cond, sigma=plan.consistency, scale=plan.scale, origin=origin)
    block = (slice(None), job.block[0].slice(origin[0]), job.block[1].slice(origin[1]))
    out = [intensity.denormalize(x0[block].mean(axis=0))]
    if plan.options.uncertainty:
        meta = plan.metadata
        std = predictive_std(
            x0,
            scale=meta.uncertainty_scale,
            pool_px=meta.uncertainty_pool,
            antithetic=plan.antithetic,
        )
        out.append((std[block[1:]] * np.float32(intensity.span / 2.0)).astype(np.float32))
    report.flush()
    return np.stack(out).astype(np.float32)


def _axis_refs(bounds: NDArray[np.int64], read: Span) -> tuple[range, slice]:
    """The input chunks (along one axis) under an LR read window, and where it lies in them.

    Reading chunk keys directly (instead of slicing the dask array once per block)
    keeps building the graph of a whole slide fast; the window is the same either way.
    """
    c0 = int(np.searchsorted(bounds, read.start, side="right")) - 1
    c1 = int(np.searchsorted(bounds, read.stop - 1, side="right")) - 1
    return range(c0, c1 + 1), read.slice(int(bounds[c0]))


def _lead_refs(
    bounds: list[NDArray[np.int64]], lead_index: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The input chunk holding a plane along each leading axis, and the plane's offset in it."""
    chunks, offsets = [], []
    for k, b in zip(lead_index, bounds, strict=True):
        c = int(np.searchsorted(b, k, side="right")) - 1
        chunks.append(c)
        offsets.append(k - int(b[c]))
    return tuple(chunks), tuple(offsets)


@dataclass(frozen=True)
class _Blocks:
    """What every block task shares: the per-axis plans, where the LR windows lie in the
    input chunks, and the leading axes (one copy for the whole graph)."""

    axes: tuple[tuple[AxisBlock, ...], tuple[AxisBlock, ...]]
    cuts: tuple[tuple[slice, ...], tuple[slice, ...]]  # LR window in its assembled chunks
    lead_offsets: tuple[tuple[int, ...], ...]  # per plane: its index in its input chunk
    geometry: tuple[Any, ...]  # the rest of plan_block's arguments


def _window(chunks: list[list[NDArray]], ys: slice, xs: slice) -> NDArray:
    """``np.block(chunks)[ys, xs]`` without the whole chunk grid: each chunk's part, joined."""
    heights = np.cumsum([0, *(row[0].shape[0] for row in chunks)])
    widths = np.cumsum([0, *(c.shape[1] for c in chunks[0])])
    parts = []
    for row, y0, y1 in zip(chunks, heights[:-1], heights[1:], strict=True):
        top, bottom = max(ys.start, y0) - y0, min(ys.stop, y1) - y0
        parts.append(
            [
                c[top:bottom, max(xs.start, x0) - x0 : min(xs.stop, x1) - x0]
                for c, x0, x1 in zip(row, widths[:-1], widths[1:], strict=True)
            ]
        )
    return np.block(parts)


def _block_task(
    chunks: list[list[NDArray]], plane: int, i: int, j: int, *, blocks: _Blocks, **kwargs: Any
) -> NDArray[np.float32]:
    """Plan block (plane, i, j)'s tiles, assemble its LR window from the chunks, restore it."""
    return_freed_memory()  # once per process: freed canvases go back to the OS
    offsets = blocks.lead_offsets[plane]
    planes = [[c[offsets] for c in row] for row in chunks]
    window = _window(planes, blocks.cuts[0][i], blocks.cuts[1][j])
    span = (blocks.axes[0][i].block, blocks.axes[1][j].block)
    out = restore_block(window, plan_block(plane, span, *blocks.geometry), **kwargs)
    # (mean [, std]); the image alone is the block itself, with no getitem task per block
    shape = (*(1,) * len(offsets), *out.shape[1:])
    return out.reshape((len(out), *shape) if len(out) > 1 else shape)


def _chunk_reader(image: da.Array) -> Any:
    """How a block task names an input chunk: by its read task, when that depends on
    nothing (a file reader's, ``da.zeros``), so the block task reads the chunk itself and
    no chunk waits in memory for the other blocks that read it (with shared chunk keys
    about 2.5 rows of input chunks did: memory grew with the image's width); otherwise
    by its key, computed once and shared."""
    from dask._task_spec import Task
    from dask.highlevelgraph import HighLevelGraph

    graph = image.__dask_graph__()
    if not isinstance(graph, HighLevelGraph) or graph.dependencies.get(image.name):
        return lambda key: key
    layer = graph.layers[image.name]

    def read(key: Any) -> Any:
        node = layer[key]
        return node if isinstance(node, Task) and not node.dependencies else key

    return read


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
    outputs, block_tiles = _block_graph(image, model.denoiser, plan, intensity)
    return RestoreResult(
        image=outputs[0],
        uncertainty=outputs[1] if plan.options.uncertainty else None,
        intensity_range=intensity,
        plan=plan,
        block_tiles=block_tiles,
    )


def _block_graph(
    image: da.Array, denoiser: Denoiser, plan: RestorePlan, intensity: IntensityRange
) -> tuple[list[da.Array], BlockTiles]:
    """The image [and uncertainty] arrays, one task per block, and each block's tiles.

    The graph holds one entry per block and no tile: the blocks along each axis are
    planned once (:func:`~tilesr.engine.blocks.axis_blocks`), an entry names only its
    block's indices and input chunks, and each task lists its own tiles when it runs.
    """
    import dask
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    scale, lead = plan.scale, tuple(int(n) for n in image.shape[:-2])
    lr_shape = (int(image.shape[-2]), int(image.shape[-1]))
    hr_shape = (lr_shape[0] * scale, lr_shape[1] * scale)
    token = dask.base.tokenize(image.name, plan.options, plan.metadata, intensity, denoiser)
    name = f"tilesr-restore-{token}"
    bounds = [np.cumsum([0, *c]) for c in image.chunks]
    geometry = (hr_shape, lr_shape, scale, plan.tile_size, plan.overlap, plan.context)
    axes = [
        axis_blocks(hr, lr, *geometry[2:], plan.block_size)
        for hr, lr in zip(hr_shape, lr_shape, strict=True)
    ]
    refs = [[_axis_refs(b, a.lr_read) for a in ax] for b, ax in zip(bounds[-2:], axes, strict=True)]
    planes = [tuple(int(k) for k in np.unravel_index(p, lead)) for p in range(math.prod(lead))]
    leads = [_lead_refs(bounds[:-2], index) for index in planes]
    shared = _Blocks(
        (tuple(axes[0]), tuple(axes[1])),
        (tuple(r[1] for r in refs[0]), tuple(r[1] for r in refs[1])),
        tuple(offsets for _, offsets in leads),
        geometry,
    )
    task = functools.partial(
        _block_task, blocks=shared, plan=plan, intensity=intensity, denoiser=denoiser
    )
    layer: dict[Any, Any] = {}
    stacked = f"{name}-stacked" if plan.options.uncertainty else name
    chunk = _chunk_reader(image)
    by_key = False  # whether any block names an input chunk by its key
    for p, (index, (lead_chunks, _)) in enumerate(zip(planes, leads, strict=True)):
        # one object per input chunk, shared by the (about four) blocks that read it
        key = functools.cache(lambda cy, cx, c=lead_chunks: chunk((image.name, *c, cy, cx)))
        for i, (rows, _) in enumerate(refs[0]):
            for j, (cols, _) in enumerate(refs[1]):
                keys = [[key(cy, cx) for cx in cols] for cy in rows]
                by_key = by_key or any(isinstance(k, tuple) for row in keys for k in row)
                layer[(stacked, *index, i, j)] = (task, keys, p, i, j)
    chunks = (
        *((1,) * n for n in lead),
        tuple(a.block.size for a in axes[0]),
        tuple(a.block.size for a in axes[1]),
    )
    tiles = BlockTiles(lead, tuple(a.tiles for a in axes[0]), tuple(a.tiles for a in axes[1]))
    # blocks that carry their chunk reads need nothing of the input's graph
    inputs = [image] if by_key else []
    graph = HighLevelGraph.from_collections(stacked, layer, dependencies=inputs)  # type: ignore[arg-type]
    if not plan.options.uncertainty:
        return [da.Array(graph, name, chunks, dtype=np.float32)], tiles
    arrays = []
    for k, part in enumerate((name, f"{name}-uncertainty")):
        picks = {(part, *idx[1:]): (operator.getitem, idx, k) for idx in layer}
        layers: dict[str, Any] = {**graph.layers, part: picks}
        deps = {**graph.dependencies, part: {stacked}}
        arrays.append(da.Array(HighLevelGraph(layers, deps), part, chunks, dtype=np.float32))
    return arrays, tiles
