"""The plan the engine runs: :class:`~tilesr.options.RestoreOptions` resolved once.

:func:`make_plan` fills every option the user left to the model from its
:class:`~tilesr.metadata.ModelMetadata`, checks what needs the model or the image (tile
geometry against the network's size multiple, sampling options a regression model does
not take, the axes, the size of the graph) and returns a :class:`RestorePlan`. Every
block task reads the plan; provenance and the resume fingerprint are its
:meth:`RestorePlan.record`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any, TypeVar

from tilesr.diffusion.consistency import consistency_reach
from tilesr.diffusion.samplers import Sampler, make_sampler
from tilesr.diffusion.sampling import SampleNoise, start_timestep
from tilesr.diffusion.schedule import build_schedule
from tilesr.diffusion.uncertainty import pooling_reach
from tilesr.engine.model import EngineModel
from tilesr.errors import TilesrError
from tilesr.io.axes import AXIS_LETTERS, check_axes
from tilesr.metadata import ModelMetadata, ScheduleSpec, check_tile_geometry
from tilesr.options import RestoreOptions
from tilesr.progress import Progress

#: blocks are about this many HR pixels wide by default (rounded to the tile stride).
#: Each block re-evaluates a one-tile context: at 8192^2 output, 1024-px blocks cost
#: 1.77x the bare tile grid and 2048-px blocks 1.38x (tools/bench_engine.py), for ~2.6x
#: the canvas memory per block (a few hundred MB).
DEFAULT_BLOCK = 2048
#: most blocks one restoration may plan: the client's graph holds one small entry per
#: block (about 1 KB, none per tile: tools/bench_engine.py, plan), so this bounds it to a
#: few GB; at the default 2016-px blocks it is a 4-million-pixel-square output (about 70 TB
#: of float32), far beyond what a store holds. Larger blocks raise it.
MAX_GRAPH_BLOCKS = 2**22
#: options that decide how fast, never what: a block is bit-identical whatever the batch
#: size and the ONNX Runtime thread count (tests/engine/test_restore.py), so they are not
#: part of the record (outputs made with other values are the same, and resume)
BIT_NEUTRAL = ("batch_size", "threads")

T = TypeVar("T")


@dataclass(frozen=True)
class RestorePlan:
    """One restoration as the engine runs it; identical for all blocks.

    Attributes
    ----------
    options
        The effective options: every default filled in (the model's sampling, strength
        and tile geometry, the block and batch size, whether to compute uncertainty).
    metadata
        The model's metadata (schedule, prediction type, scale).
    provider
        The ONNX Runtime provider running the network (None: another Denoiser).
    progress
        Where block tasks report finished tiles (None: nowhere).
    """

    options: RestoreOptions
    metadata: ModelMetadata
    provider: str | None = None
    progress: Progress | None = field(default=None, compare=False, repr=False)

    @property
    def scale(self) -> int:
        return self.metadata.scale

    @property
    def tile_size(self) -> int:
        return _filled(self.options.tile_size)

    @property
    def overlap(self) -> int:
        return _filled(self.options.overlap)

    @property
    def block_size(self) -> int:
        return _filled(self.options.block_size)

    @property
    def batch_size(self) -> int:
        return _filled(self.options.batch_size)

    @property
    def samples(self) -> int:
        return _filled(self.options.samples)

    @property
    def context(self) -> int:
        """HR pixels sampled around a block under fusion (:func:`block_context`), so that the
        block's edge tiles have their neighbours (fusion couples all tiles of a canvas)."""
        return _filled(self.options.context)

    @property
    def background_below(self) -> float | None:
        """Skip tiles whose brightest normalised conditioning pixel is below this."""
        skip = self.options.skip_background
        return None if skip is None else 2.0 * skip - 1.0

    @property
    def start(self) -> int:
        """The first timestep, from the strength."""
        return start_timestep(self.metadata.schedule.timesteps, _filled(self.options.strength))

    @property
    def timesteps(self) -> list[int]:
        return self.build_sampler().timesteps(self.options.steps, self.start)

    @property
    def evaluations_per_tile(self) -> int:
        """Network evaluations a tile costs: one per sample and step (what the bar counts)."""
        return self.samples * len(self.timesteps)

    @property
    def antithetic(self) -> bool:
        """Whether the samples are antithetic pairs (their noise and their uncertainty)."""
        return self.options.sample_noise == "antithetic"

    @property
    def consistency(self) -> float:
        """Data-consistency sigma in input pixels (0: off)."""
        return _filled(self.options.consistency)

    def noise(self, plane: int) -> SampleNoise:
        """The keyed noise of ``plane`` (the caller applies the plane-noise option)."""
        return SampleNoise(self.options.seed, plane, self.antithetic)

    def build_sampler(self) -> Sampler:
        sampler = _filled(self.options.sampler)
        return _sampler(self.metadata.schedule, sampler, self.metadata.prediction)

    def record(self) -> dict[str, Any]:
        """The effective settings that decide the output, as JSON-able values.

        What the output's provenance records and a resumed run must match: every option
        but :data:`BIT_NEUTRAL` (a resumed run may use another batch size or thread
        count), and the provider, scale and context.
        """
        options = {k: v for k, v in asdict(self.options).items() if k not in BIT_NEUTRAL}
        return {**options, "provider": self.provider, "scale": self.scale, "context": self.context}


def _filled(value: T | None) -> T:
    """An option :func:`make_plan` has filled in (a plan holds no None where it reads one)."""
    if value is None:
        raise ValueError("a RestorePlan must come from make_plan, which fills in every default")
    return value


@lru_cache(maxsize=8)
def _sampler(schedule: ScheduleSpec, name: str, prediction: str) -> Sampler:
    return make_sampler(name, build_schedule(schedule), prediction=prediction)


def make_plan(
    options: RestoreOptions,
    model: EngineModel,
    shape: tuple[int, ...],
    *,
    progress: Progress | None = None,
) -> RestorePlan:
    """Resolve ``options`` against ``model`` for an image of ``shape``; refuse what cannot run.

    Everything here is arithmetic on the options, the metadata and the shape: a
    restoration that cannot run is refused before any pixel is read.
    """
    meta = model.metadata
    samples, steps, sampler = _sampling(options, meta)
    tile = meta.tile_size if options.tile_size is None else options.tile_size
    overlap = meta.overlap if options.overlap is None else options.overlap
    check_tile_geometry(tile, overlap, meta.size_multiple)
    uncertainty = samples > 1 if options.uncertainty is None else options.uncertainty
    consistency = meta.consistency if options.consistency is None else options.consistency
    if consistency and options.fuse != "step":
        raise TilesrError(
            f"consistency reads beyond a block, which fuse={options.fuse!r} samples without "
            "context: use fuse 'step' or consistency 0"
        )
    reach = max(
        pooling_reach(meta.uncertainty_pool) if uncertainty else 0,
        consistency_reach(consistency, meta.scale),
    )
    effective = replace(
        options,
        samples=samples,
        steps=steps,
        sampler=sampler,
        strength=meta.strength if options.strength is None else options.strength,
        sample_noise=options.sample_noise or meta.sample_noise,
        uncertainty=uncertainty,
        consistency=float(consistency),
        tile_size=tile,
        overlap=overlap,
        context=block_context(options, tile, reach, meta.context),
        block_size=options.block_size or default_block_size(tile, overlap),
        batch_size=options.batch_size or model.default_batch_size(),
        threads=model.threads,
        axes=image_axes(options.axes, tuple(shape)),
    )
    plan = RestorePlan(effective, meta, model.provider, progress)
    check_graph_size(tuple(shape), plan)
    return plan


def _sampling(options: RestoreOptions, meta: ModelMetadata) -> tuple[int, int, str]:
    """The model's sampling defaults where none is given; a regression model takes none."""
    if meta.objective == "regression":
        fixed = {
            "samples": (options.samples, 1),
            "steps": (options.steps, 1),
            "sampler": (options.sampler, meta.sampler),
            "sample noise": (options.sample_noise, meta.sample_noise),
        }
        wrong = [f"{k} {v!r}" for k, (v, ok) in fixed.items() if v is not None and v != ok]
        if wrong:
            raise TilesrError(
                "this is a regression model, evaluated once per tile: "
                f"{', '.join(wrong)} do not apply"
            )
    return (
        meta.samples if options.samples is None else options.samples,
        meta.steps if options.steps is None else options.steps,
        meta.sampler if options.sampler is None else options.sampler,
    )


def block_context(
    options: RestoreOptions, tile_size: int, reach: int = 0, default: int | None = None
) -> int:
    """HR pixels sampled around a block: the option, else the model's ``default``, else
    one tile; none without fusion.

    ``reach``: the pixels the uncertainty's pooling and the data consistency read beyond
    a block (they are computed on the canvas), the least context a block can be given;
    a model default below it is raised to it (an explicit option below it is refused).
    """
    given = options.context
    if options.fuse != "step":
        if given:
            raise TilesrError(
                f"context applies to fuse='step' only (fuse={options.fuse!r} samples every "
                f"tile on its own), got context {given}"
            )
        return 0
    if given is not None and given < reach:
        raise TilesrError(
            f"context must be at least the {reach} px the uncertainty's pooling and the "
            "data consistency read "
            f"beyond a block, got {given}"
        )
    if given is None:
        return tile_size if default is None else max(default, reach)
    return given


def image_axes(axes: str | None, shape: tuple[int, ...]) -> str:
    """The checked axes of an image; by default the last ``ndim`` letters of ``tczyx``."""
    if len(shape) < 2:
        raise TilesrError(f"image must have at least 2 dimensions (y, x), got {len(shape)}")
    return check_axes(axes or AXIS_LETTERS[-len(shape) :], shape, source="image")


def default_block_size(tile_size: int, overlap: int) -> int:
    """A multiple of the tile stride near :data:`DEFAULT_BLOCK` HR pixels."""
    stride = tile_size - overlap
    return stride * max(1, round(DEFAULT_BLOCK / stride))


def check_graph_size(shape: tuple[int, ...], plan: RestorePlan) -> None:
    """Refuse a restoration whose graph would hold more than :data:`MAX_GRAPH_BLOCKS` blocks.

    Pure arithmetic on the shape, so an input declaring an absurd shape is refused at
    once, not after minutes of planning.
    """
    blocks = math.prod(int(n) for n in shape[:-2])
    for n in shape[-2:]:
        blocks *= -(-int(n) * plan.scale // plan.block_size)
    if blocks > MAX_GRAPH_BLOCKS:
        raise TilesrError(
            f"image of shape {tuple(shape)} is too large for one restoration: {blocks} blocks "
            f"of {plan.block_size} px (at most {MAX_GRAPH_BLOCKS}); use larger blocks, or "
            "restore a pyramid level or a crop"
        )
