"""Restore one canvas (a block and its context) in NumPy: fused tiled diffusion sampling.

Everything here is a pure function of global coordinates: the tiles come from the
global grid, the noise is keyed by (seed, stream, step, plane, sample) at global HR
pixels, and the blend weights depend only on the tiles. So a pixel gets the same
inputs wherever its block starts, whichever worker runs it and however the network
calls are batched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tilesr.denoisers.base import Denoiser
from tilesr.diffusion.parameterization import output_for_x0
from tilesr.diffusion.sampling import (
    INITIAL_NOISE,
    STEP_NOISE,
    initial_state,
    run_reverse,
)
from tilesr.engine.blending import blend, tile_weight, weight_sum
from tilesr.engine.plan import RestorePlan
from tilesr.engine.tiling import TileWindow

Report = Callable[[float], None]


@dataclass(frozen=True)
class Canvas:
    """One canvas to sample: the conditioning, where it lies, its tiles and which to skip."""

    cond: NDArray[np.float32]  # normalised conditioning on the HR grid, (H, W)
    origin: tuple[int, int]  # global HR coordinates of cond[0, 0]
    tiles: list[TileWindow]
    skipped: list[bool]  # per tile: background, not run through the network
    plane: int  # flat index of the (z/c/t) plane, part of the noise key

    @property
    def active(self) -> list[TileWindow]:
        return [t for t, s in zip(self.tiles, self.skipped, strict=True) if not s]


def is_background(cond_tile: NDArray[np.float32], below: float | None) -> bool:
    """Whether a tile is skipped: its brightest normalised cond pixel is below ``below``."""
    return below is not None and float(cond_tile.max()) < below


def sample_canvas(
    denoiser: Denoiser,
    cond: NDArray[np.float32],
    origin: tuple[int, int],
    tiles: list[TileWindow],
    plan: RestorePlan,
    *,
    plane: int = 0,
    report: Report | None = None,
) -> NDArray[np.float32]:
    """Sample clean images (samples, H, W) for the normalised ``cond`` canvas.

    Parameters
    ----------
    denoiser
        The network; called with batches of at most ``plan.batch_size`` tiles.
    cond
        Normalised conditioning image on the HR grid, (H, W), covering exactly the
        union of the outer windows of ``tiles``.
    origin
        Global HR coordinates of ``cond[0, 0]``.
    tiles
        Tiles of the global grid that make up the canvas.
    plan
        Sampler, steps, seed, samples, tiling, batch size and fusion.
    plane
        Flat index of the (z/c/t) plane, part of the noise key.
    report
        Called with the fraction of tiles completed after each network batch.
    """
    below = plan.background_below
    skipped = [is_background(cond[t.outer_slices(origin)], below) for t in tiles]
    canvas = Canvas(cond, origin, tiles, skipped, plane)
    report = report or (lambda _: None)
    report(float(sum(skipped)))
    n = plan.samples
    if not canvas.active:
        return np.broadcast_to(cond, (n, *cond.shape)).copy()
    if plan.options.fuse == "step":
        x0 = _sample_fused(denoiser, canvas, plan, report)
    else:
        x0 = _sample_independent(denoiser, canvas, plan, report)
    if len(canvas.active) < len(tiles):
        # pixels that only skipped tiles cover are background: exactly the input
        covered = weight_sum(canvas.active, origin, cond.shape, plan.tile_size, plan.overlap) > 0
        x0[:, ~covered] = cond[~covered]
    return x0


def _sample_fused(
    denoiser: Denoiser, canvas: Canvas, plan: RestorePlan, report: Report
) -> NDArray[np.float32]:
    """MultiDiffusion: blend the tiles' network outputs on the canvas at every step.

    Blending the raw outputs equals blending their (x0, eps) readings: both are linear in
    the output at a fixed x_t, whatever the model's prediction type.
    """
    cond, origin, plane = canvas.cond, canvas.origin, canvas.plane
    n, shape = plan.samples, cond.shape
    sampler = plan.build_sampler()
    timesteps = plan.timesteps
    weight = tile_weight(plan.tile_size, plan.overlap)
    wsum = weight_sum(canvas.tiles, origin, shape, plan.tile_size, plan.overlap)
    pairs = list(zip(canvas.tiles, canvas.skipped, strict=True))
    active_slices = [t.outer_slices(origin) for t, s in pairs if not s]
    skipped_slices = [t.outer_slices(origin) for t, s in pairs if s]
    cond_tiles = [cond[sl] for sl in active_slices]
    entries = [(j, s) for j in range(len(active_slices)) for s in range(n)]
    per_entry = 1.0 / (n * len(timesteps))

    acc = np.empty((n, *shape), dtype=np.float64)  # reused by every step
    weighted = np.empty(weight.shape, dtype=np.float64)

    def predict(x: NDArray[np.float32], t: int) -> NDArray[np.float32]:
        # float64 accumulation: equal predictions from overlapping tiles blend back to
        # exactly themselves (a per-pixel network gives the untiled result bit for bit)
        acc.fill(0.0)
        for b0 in range(0, len(entries), plan.batch_size):
            batch = entries[b0 : b0 + plan.batch_size]
            noisy = np.stack([x[s][active_slices[j]] for j, s in batch])[:, None]
            cnd = np.stack([cond_tiles[j] for j, _ in batch])[:, None]
            tt = np.full((len(batch),), t, dtype=np.float32)
            outputs = denoiser.predict(noisy, cnd, tt)[:, 0]
            for (j, s), e in zip(batch, outputs, strict=True):
                acc[s][active_slices[j]] += np.multiply(weight, e, out=weighted)
            report(len(batch) * per_entry)
        if skipped_slices:
            # a skipped tile predicts the output for which x0 = cond (background)
            abar = sampler.schedule.alpha_bar(t)
            bg = output_for_x0(cond, x, abar, plan.metadata.prediction)
            for sl in skipped_slices:
                acc[(slice(None), *sl)] += weight * bg[(slice(None), *sl)]
        return np.divide(acc, wsum, out=acc).astype(np.float32)

    noise = plan.noise(plane)

    def step_noise(i: int) -> NDArray[np.float32]:
        return noise.draw(STEP_NOISE, i, n, origin, shape)

    # the initial noise is not kept: one canvas less in memory while sampling
    x_start = initial_state(
        sampler.schedule, plan.start, cond, noise.draw(INITIAL_NOISE, 0, n, origin, shape)
    )
    return run_reverse(predict, x_start, sampler, timesteps, step_noise)


def _sample_independent(
    denoiser: Denoiser, canvas: Canvas, plan: RestorePlan, report: Report
) -> NDArray[np.float32]:
    """Sample every tile on its own (same keyed noise) and blend only the final images."""
    cond, origin, tiles = canvas.cond, canvas.origin, canvas.tiles
    n, size = plan.samples, plan.tile_size
    noise = plan.noise(canvas.plane)
    sampler = plan.build_sampler()
    timesteps = plan.timesteps
    slices = [t.outer_slices(origin) for t in tiles]
    outputs: list[NDArray[np.float32]] = [
        np.broadcast_to(cond[sl], (n, size, size)) for sl in slices
    ]
    todo = [j for j, s in enumerate(canvas.skipped) if not s]
    group = max(1, plan.batch_size // n)  # tiles sampled together
    per_entry = 1.0 / (n * len(timesteps))
    for g0 in range(0, len(todo), group):
        members = todo[g0 : g0 + group]
        cond_b = np.stack([cond[slices[j]] for j in members for _ in range(n)])[:, None]
        corners = [(tiles[j].outer[0].start, tiles[j].outer[1].start) for j in members]

        def keyed(stream: int, step: int, corners=corners) -> NDArray[np.float32]:
            return np.concatenate([noise.draw(stream, step, n, c, (size, size)) for c in corners])

        def predict(x: NDArray[np.float32], t: int, cond_b=cond_b) -> NDArray[np.float32]:
            out = np.empty_like(x)
            for b0 in range(0, len(x), plan.batch_size):
                sl = slice(b0, b0 + plan.batch_size)
                tt = np.full((len(x[sl]),), t, dtype=np.float32)
                out[sl] = denoiser.predict(x[sl][:, None], cond_b[sl], tt)[:, 0]
                report(len(x[sl]) * per_entry)
            return out

        def step_noise(i: int, keyed=keyed) -> NDArray[np.float32]:
            return keyed(STEP_NOISE, i)

        x_start = initial_state(sampler.schedule, plan.start, cond_b[:, 0], keyed(INITIAL_NOISE, 0))
        x0 = run_reverse(predict, x_start, sampler, timesteps, step_noise)
        for m, j in enumerate(members):
            outputs[j] = x0[m * n : (m + 1) * n]
    return blend(outputs, tiles, origin, cond.shape, plan.tile_size, plan.overlap)
