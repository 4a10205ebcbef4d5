"""``restore``: a lazy dask graph of independent output blocks, each sampled by fused tiles.

Layout. The output ``(..., Y*s, X*s)`` is cut into blocks of ``B x B`` HR pixels on a
global grid (the last block of each axis is shorter); output chunk ``(1, ..., 1, B, B)``
is block ``(plane, i, j)``. One task restores one block: it reads the LR window of the
block plus a halo from the input chunks it overlaps (its task depends on exactly those
chunk keys, so the input's chunking does not matter), reflects it beyond the image
edge, normalises it
with the global intensity range, upsamples it with the exact windowed bicubic, samples
the canvas (every tile of the global grid within ``halo`` of the block, see
:mod:`tilesr.engine.canvas`) and crops the block. Mean and standard deviation over the
samples come out of the same task as one stacked array.

Determinism. Tiles, noise and blend weights depend only on global coordinates, the
plane index and the seed, so a block is bit-identical whatever the input chunking, the
batch size and the ONNX Runtime thread count (its CPU kernels give per-item results
independent of both; tested with an exported U-Net), the number of workers, the
scheduler or a restart. The block size and the
halo do matter for a spatial network under ``fuse="step"``: fusion couples all tiles of
a canvas, so a canvas is not the whole image; the halo of one tile keeps the block
edges away from the canvas edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tilesr.data.conditioning import conditioning
from tilesr.data.normalize import IntensityRange
from tilesr.data.resize import BICUBIC_MARGIN, bicubic_padding
from tilesr.denoisers.base import Denoiser
from tilesr.diffusion.samplers import SAMPLER_NAMES
from tilesr.diffusion.sampling import start_timestep
from tilesr.engine.canvas import FUSE_MODES, SamplingPlan, sample_canvas
from tilesr.engine.progress import tile_reporter
from tilesr.engine.tiling import Span, TileWindow, block_spans, bounding_box, tile_grid
from tilesr.errors import TilesrError
from tilesr.metadata import ModelMetadata, check_tile_geometry

if TYPE_CHECKING:
    import dask.array as da

#: at most this many input pixels are read to find the global intensity percentiles
PERCENTILE_PIXELS = 4_000_000
#: blocks are about this many HR pixels wide by default (rounded to the tile stride).
#: Each block re-evaluates a one-tile halo: at 8192^2 output, 1024-px blocks cost 1.77x
#: the bare tile grid and 2048-px blocks 1.38x (tools/bench_engine.py), for ~2.6x the
#: canvas memory per block (a few hundred MB).
DEFAULT_BLOCK = 2048
AXES_CHARS = "tczyx"
#: most tile windows one restoration may plan: the graph holds every tile of every block
#: (a few hundred bytes each), so this bounds it to a few GB and refuses absurd shapes
#: before any pass over the input
MAX_GRAPH_TILES = 2**23


@dataclass(frozen=True)
class RestoreResult:
    """A lazy restoration.

    Attributes
    ----------
    image
        float32 ``(..., Y*scale, X*scale)`` in raw intensity units, chunks ``(1, ..., 1, B, B)``.
    uncertainty
        Per-pixel standard deviation over the samples (raw units), same chunks; None
        unless requested. Computing ``image`` and ``uncertainty`` in one ``dask.compute``
        or ``da.store`` call runs every block once.
    intensity_range
        The input intensities mapped to [-1, 1] (and back on output).
    metadata
        The model's metadata.
    settings
        Provenance: sampler, steps, samples, seed, tile, overlap, block, halo, fuse,
        skip_background, uncertainty, scale, axes and ``tiles`` (the number of tiles
        all blocks sample, for a progress bar).
    block_tiles
        Tiles sampled by each block, keyed by the block's chunk index
        ``(*lead_index, i, j)`` in ``image`` (a resumed run advances its progress bar
        by the blocks it skips).
    """

    image: da.Array
    uncertainty: da.Array | None
    intensity_range: IntensityRange
    metadata: ModelMetadata
    settings: dict[str, Any] = field(default_factory=dict)
    block_tiles: dict[tuple[int, ...], int] = field(default_factory=dict)


@dataclass(frozen=True)
class BlockJob:
    """Everything one block task needs to know besides the data and the model."""

    plane: int
    block: tuple[Span, Span]  # output pixels (global HR)
    canvas: tuple[Span, Span]  # sampled HR pixels (global; may pass the image edge)
    tiles: tuple[TileWindow, ...]
    lr_need: tuple[Span, Span]  # LR pixels the canvas needs (may pass the edge: reflected)
    lr_read: tuple[Span, Span]  # the part of lr_need's reflection read from the input


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


def default_block_size(tile_size: int, overlap: int) -> int:
    """A multiple of the tile stride near :data:`DEFAULT_BLOCK` HR pixels."""
    stride = tile_size - overlap
    return stride * max(1, round(DEFAULT_BLOCK / stride))


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
    halo: int,
) -> BlockJob:
    """Tiles, canvas and input window of one output block."""
    region = (
        Span(block[0].start - halo, block[0].stop + halo),
        Span(block[1].start - halo, block[1].stop + halo),
    )
    tiles = tile_grid(hr_shape, tile_size, overlap, region=region)
    canvas = bounding_box(tiles)
    pad = BICUBIC_MARGIN if scale > 1 else 0
    need = tuple(Span(c.start // scale - pad, -(-c.stop // scale) + pad) for c in canvas)
    read = []
    for span, n in zip(need, lr_shape, strict=True):
        idx = _reflect_index(np.arange(span.start, span.stop), n)
        read.append(Span(int(idx.min()), int(idx.max()) + 1))
    return BlockJob(plane, block, canvas, tuple(tiles), need, (read[0], read[1]))  # type: ignore[arg-type]


def block_conditioning(
    lr: NDArray, job: BlockJob, lr_shape: tuple[int, int], scale: int, rng: IntensityRange
) -> NDArray[np.float32]:
    """The conditioning image of a block's canvas from its LR read (edges reflected)."""
    rows = _reflect_index(np.arange(job.lr_need[0].start, job.lr_need[0].stop), lr_shape[0])
    cols = _reflect_index(np.arange(job.lr_need[1].start, job.lr_need[1].stop), lr_shape[1])
    window = np.asarray(lr)[np.ix_(rows - job.lr_read[0].start, cols - job.lr_read[1].start)]
    margin = BICUBIC_MARGIN if scale > 1 else 0
    cond = conditioning(window, scale, rng, margin=margin)
    # ``cond`` starts at HR pixel (need.start + margin) * scale; the canvas may start later
    oy = job.canvas[0].start - (job.lr_need[0].start + margin) * scale
    ox = job.canvas[1].start - (job.lr_need[1].start + margin) * scale
    return cond[oy : oy + job.canvas[0].size, ox : ox + job.canvas[1].size]


def restore_block(
    lr: NDArray,
    job: BlockJob,
    plan: SamplingPlan,
    rng: IntensityRange,
    lr_shape: tuple[int, int],
    scale: int,
    with_std: bool,
    denoiser: Denoiser,
) -> NDArray[np.float32]:
    """One block task: (1 or 2, h, w) = mean [and std] over samples in raw units."""
    report = tile_reporter()
    cond = block_conditioning(lr, job, lr_shape, scale, rng)
    origin = (job.canvas[0].start, job.canvas[1].start)
    x0 = sample_canvas(
        denoiser, cond, origin, list(job.tiles), plan, plane=job.plane, report=report
    )
    crop = x0[:, job.block[0].slice(origin[0]), job.block[1].slice(origin[1])]
    out = [rng.denormalize(crop.mean(axis=0))]
    if with_std:
        out.append((crop.std(axis=0) * np.float32(rng.span / 2.0)).astype(np.float32))
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


def _check_axes(axes: str | None, ndim: int) -> str:
    if ndim < 2:
        raise TilesrError(f"image must have at least 2 dimensions (y, x), got {ndim}")
    if axes is None:
        return "yx" if ndim == 2 else ""
    axes = axes.lower()
    if (
        len(axes) != ndim
        or not axes.endswith("yx")
        or len(set(axes)) != len(axes)
        or any(a not in AXES_CHARS for a in axes)
    ):
        raise TilesrError(
            f"axes must name each of the {ndim} dimensions once from 'tczyx' and end "
            f"with 'yx', got {axes!r}"
        )
    return axes


def check_graph_size(
    shape: tuple[int, ...], scale: int, tile: int, overlap: int, block: int, halo: int
) -> None:
    """Refuse a restoration whose graph would plan more than :data:`MAX_GRAPH_TILES` tiles.

    Pure arithmetic on the shape (an upper estimate of the tiles all blocks sample), so
    an input declaring an absurd shape is refused at once, not after minutes of planning.
    """
    stride = tile - overlap
    total = math.prod(int(n) for n in shape[:-2])
    for n in shape[-2:]:
        length = int(n) * scale
        blocks = -(-length // block)
        per_block = min(
            -(-max(length - tile, 0) // stride) + 1, -(-(block + 2 * halo) // stride) + 1
        )
        total *= blocks * per_block
    if total > MAX_GRAPH_TILES:
        raise TilesrError(
            f"image of shape {tuple(shape)} is too large for one restoration: about {total} "
            f"tiles of {tile} px (at most {MAX_GRAPH_TILES}); restore a pyramid level or a crop"
        )


def check_request_size(
    shape: tuple[int, ...],
    metadata: ModelMetadata,
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    block_size: int | None = None,
    fuse: str = "step",
) -> None:
    """:func:`check_graph_size` with :func:`restore`'s defaults, before any pixel is read."""
    tile = metadata.tile_size if tile_size is None else tile_size
    ovl = metadata.overlap if overlap is None else overlap
    check_tile_geometry(tile, ovl, metadata.size_multiple)
    block = block_size or default_block_size(tile, ovl)
    check_graph_size(shape, metadata.scale, tile, ovl, block, tile if fuse == "step" else 0)


def _probe(denoiser: Denoiser, tile: int, timesteps: int, source: str) -> None:
    """One network call on a blank tile: a model that cannot run fails here, in one line."""
    zeros = np.zeros((1, 1, tile, tile), dtype=np.float32)
    t = np.full((1,), timesteps - 1, dtype=np.float32)
    try:
        eps = np.asarray(denoiser.predict(zeros, zeros, t))
    except Exception as exc:  # ORT raises its own untyped errors (shapes, types, memory)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise TilesrError(
            f"{source} fails on a {tile}x{tile} tile: {type(exc).__name__} {first}"
        ) from None
    if eps.shape != zeros.shape:
        raise TilesrError(f"{source} returns shape {eps.shape} for a tile of shape {zeros.shape}")
    if not np.isfinite(eps).all():
        raise TilesrError(f"{source} returns non-finite values for a blank tile")


def _load_denoiser(model: str | Path | Denoiser, threads: int | None) -> Denoiser:
    if isinstance(model, str | Path):
        from tilesr.denoisers.onnx_backend import OnnxDenoiser
        from tilesr.engine.scheduling import threads_per_worker

        return OnnxDenoiser(model, threads=threads or threads_per_worker())
    if not isinstance(model, Denoiser):
        raise TilesrError(
            f"model must be a path to an .onnx file or a Denoiser, got {type(model).__name__}"
        )
    return model


def _check_options(
    samples: int,
    steps: int | None,
    sampler: str,
    fuse: str,
    batch_size: int | None,
    block_size: int | None,
    skip_background: float | None,
    threads: int | None,
) -> None:
    if not isinstance(samples, int) or samples < 1:
        raise TilesrError(f"samples must be a positive integer, got {samples!r}")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise TilesrError(f"steps must be a positive integer, got {steps!r}")
    if sampler not in SAMPLER_NAMES:
        raise TilesrError(f"sampler must be one of {', '.join(SAMPLER_NAMES)}, got {sampler!r}")
    if fuse not in FUSE_MODES:
        raise TilesrError(f"fuse must be one of {', '.join(FUSE_MODES)}, got {fuse!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise TilesrError(f"batch size must be a positive integer, got {batch_size!r}")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 8):
        raise TilesrError(f"block size must be an integer of at least 8, got {block_size!r}")
    if skip_background is not None and not 0.0 <= skip_background <= 1.0:
        raise TilesrError(f"skip_background must be in [0, 1], got {skip_background!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise TilesrError(f"threads must be a positive integer, got {threads!r}")


def _sampling_defaults(
    meta: ModelMetadata, samples: int | None, steps: int | None, sampler: str | None
) -> tuple[int, int, str]:
    """The model's sampling defaults where none is given; a regression model takes none."""
    if meta.objective == "regression":
        fixed = {"samples": (samples, 1), "steps": (steps, 1), "sampler": (sampler, meta.sampler)}
        wrong = [f"{k} {v!r}" for k, (v, ok) in fixed.items() if v is not None and v != ok]
        if wrong:
            raise TilesrError(
                "this is a regression model, evaluated once per tile: "
                f"{', '.join(wrong)} do not apply"
            )
    return (
        meta.samples if samples is None else samples,
        meta.steps if steps is None else steps,
        meta.sampler if sampler is None else sampler,
    )


def _default_batch(denoiser: Denoiser) -> int:
    provider = getattr(denoiser, "provider", "")
    return 32 if provider == "CUDAExecutionProvider" else 8


def restore(
    image: da.Array,
    model: str | Path | Denoiser,
    *,
    axes: str | None = None,
    samples: int | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    seed: int = 0,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    block_size: int | None = None,
    fuse: str = "step",
    uncertainty: bool = False,
    skip_background: float | None = None,
    intensity_range: IntensityRange | None = None,
    threads: int | None = None,
    strength: float | None = None,
) -> RestoreResult:
    """Restore an image lazily: super-resolve and/or denoise it with a diffusion model.

    Parameters
    ----------
    image
        Dask (or NumPy) array ``(..., Y, X)`` of raw intensities; leading axes (z/c/t)
        are restored plane by plane. Any chunking: the result does not depend on it.
    model
        Path to an exported ``.onnx`` model, or any :class:`~tilesr.denoisers.Denoiser`.
    axes
        Names of the dimensions (e.g. ``"zyx"``), checked and recorded; default ``yx``
        for 2-D input.
    samples
        Samples per pixel; the result is their mean. Default: the model's.
    steps
        Network evaluations per sample. Default: the model's.
    sampler
        ``ddpm``, ``ddim`` or ``dpmpp`` (DPM-Solver++(2M)). Default: the model's. A
        regression model is evaluated once per tile: it takes no samples, steps or sampler.
    seed
        Seed of the coordinate-keyed noise.
    tile_size, overlap
        Tile geometry in output (HR) pixels; default from the model metadata.
    batch_size
        Tile-samples per network call (default 8 on CPU, 32 on CUDA); does not change
        the result.
    block_size
        Output block (= chunk) edge in HR pixels; default a multiple of the tile stride
        near 2048 (DEFAULT_BLOCK).
    fuse
        ``"step"``: blend the tiles' noise predictions on the canvas at every step
        (MultiDiffusion), seamless. ``"final"``: sample each tile on its own and blend
        only the final images (for comparison; faster to reason about, shows seams).
    uncertainty
        Also return the per-pixel standard deviation over the samples.
    skip_background
        If set (in [0, 1]), tiles whose brightest conditioning pixel is below
        ``low + skip_background * (high - low)`` of the intensity range are not run
        through the network; their pixels are the (upsampled) input. None: no skipping.
    intensity_range
        Raw intensities mapped to [-1, 1]; default the model's ``norm_low``/``norm_high``
        percentiles of the whole input (computed now, from a strided subsample).
    threads
        ONNX Runtime intra-op threads when ``model`` is a path (default: cores divided
        by the scheduler's workers).
    strength
        Sampling starts at timestep ``round(strength * (T-1))`` from the noised
        conditioning image (1: from noise, the whole schedule); default the model's
        metadata ``strength``. See :func:`tilesr.diffusion.sampling.initial_state`.

    Returns
    -------
    RestoreResult
        Lazy ``image`` (and ``uncertainty``) with chunks ``(1, ..., 1, B, B)``.
    """
    import dask
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    if not isinstance(image, da.Array):
        image = da.asarray(image)
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TilesrError(f"image must hold integers or floats, got dtype {image.dtype}")
    axes_used = _check_axes(axes, image.ndim)
    if 0 in image.shape:
        raise TilesrError(f"image is empty, shape {image.shape}")
    denoiser = _load_denoiser(model, threads)
    meta = denoiser.metadata
    samples, steps, sampler = _sampling_defaults(meta, samples, steps, sampler)
    _check_options(samples, steps, sampler, fuse, batch_size, block_size, skip_background, threads)
    tile = meta.tile_size if tile_size is None else tile_size
    ovl = meta.overlap if overlap is None else overlap
    check_tile_geometry(tile, ovl, meta.size_multiple)
    block = block_size or default_block_size(tile, ovl)
    batch = batch_size or _default_batch(denoiser)
    scale = meta.scale
    halo = tile if fuse == "step" else 0
    check_graph_size(tuple(image.shape), scale, tile, ovl, block, halo)
    if isinstance(model, str | Path):
        # a file's graph is untrusted: run it once now rather than fail inside a block task
        _probe(denoiser, tile, meta.schedule.timesteps, str(model))
    rng = intensity_range or global_intensity_range(image, meta.norm_low, meta.norm_high)

    plan = SamplingPlan(
        schedule=meta.schedule,
        sampler=sampler,
        steps=steps,
        seed=seed,
        samples=samples,
        tile_size=tile,
        overlap=ovl,
        batch_size=batch,
        fuse=fuse,
        background_below=None if skip_background is None else 2.0 * skip_background - 1.0,
        strength=meta.strength if strength is None else strength,
        prediction=meta.prediction,
    )
    start_timestep(meta.schedule.timesteps, plan.strength)  # refuse a bad strength now
    lead = tuple(int(n) for n in image.shape[:-2])
    lr_shape = (int(image.shape[-2]), int(image.shape[-1]))
    hr_shape = (lr_shape[0] * scale, lr_shape[1] * scale)
    n_out = 2 if uncertainty else 1
    token = dask.base.tokenize(image.name, plan, rng, block, halo, n_out, denoiser)
    name = f"tilesr-restore-{token}"
    bounds = [np.cumsum([0, *c]) for c in image.chunks]
    y_blocks = list(block_spans(hr_shape[0], block))
    x_blocks = list(block_spans(hr_shape[1], block))
    layer: dict[Any, Any] = {}
    block_tiles: dict[tuple[int, ...], int] = {}
    for p in range(math.prod(lead)):
        lead_index = tuple(int(k) for k in np.unravel_index(p, lead)) if lead else ()
        for i, by in enumerate(y_blocks):
            for j, bx in enumerate(x_blocks):
                job = plan_block(p, (by, bx), hr_shape, lr_shape, scale, tile, ovl, halo)
                block_tiles[(*lead_index, i, j)] = len(job.tiles)
                keys, where = _input_refs(image.name, bounds, lead_index, job.lr_read)
                run = partial(
                    _block_task,
                    where=where,
                    job=job,
                    plan=plan,
                    rng=rng,
                    lr_shape=lr_shape,
                    scale=scale,
                    with_std=uncertainty,
                    denoiser=denoiser,
                    n_lead=len(lead),
                )
                layer[(name, 0, *lead_index, i, j)] = (run, keys)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[image])  # type: ignore[list-item]
    chunks = (
        (n_out,),
        *((1,) * n for n in lead),
        tuple(b.size for b in y_blocks),
        tuple(b.size for b in x_blocks),
    )
    stacked = da.Array(graph, name, chunks, dtype=np.float32)
    total_tiles = sum(block_tiles.values())

    settings = {
        "sampler": sampler,
        "steps": steps,
        "samples": samples,
        "seed": seed,
        "tile": tile,
        "overlap": ovl,
        "block": block,
        "halo": halo,
        "fuse": fuse,
        "skip_background": skip_background,
        "strength": plan.strength,
        "uncertainty": uncertainty,
        "scale": scale,
        "axes": axes_used,
        "tiles": total_tiles,
    }
    return RestoreResult(
        image=stacked[0],
        uncertainty=stacked[1] if uncertainty else None,
        intensity_range=rng,
        metadata=meta,
        settings=settings,
        block_tiles=block_tiles,
    )
