"""Block planning from coordinates alone: the graph holds blocks, never tiles.

Everything a block samples and reads is separable: its tiles are the product of the
rows of tiles of its y span and the columns of tiles of its x span, its canvas and its
LR window are the product of two spans. So the client plans each axis once
(:func:`axis_blocks`: per block along the axis, its canvas span, its number of tiles
and the LR window it reads) and builds one task per block from two of those; the task
lists its own tiles (:func:`plan_block`) when it runs. Planning costs O(blocks per axis
x log tiles per axis) arithmetic plus one small graph entry per block, whatever the
number of tiles: a 10^6 x 10^6 output plans in seconds (tools/bench_engine.py, plan).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tilesr.data.resize import BICUBIC_MARGIN, bicubic_padding
from tilesr.engine.tiling import Span, TileWindow, axis_windows, block_spans, tile_grid


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


@dataclass(frozen=True)
class AxisBlock:
    """One block along one axis: its output span, canvas span, tiles and LR windows."""

    block: Span
    canvas: Span
    tiles: int
    lr_need: Span
    lr_read: Span


def reflect_index(idx: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Mirror indices into [0, n) as the bicubic's own padding does (edge for tiny axes)."""
    if bicubic_padding(n) == "edge":
        return np.clip(idx, 0, n - 1)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m >= n, period - m, m)


def axis_block(
    block: Span, length: int, lr_length: int, scale: int, tile_size: int, overlap: int, context: int
) -> AxisBlock:
    """The tiles, canvas and LR windows of one block along one axis (HR ``length``)."""
    region = Span(block.start - context, block.stop + context)
    windows = axis_windows(length, tile_size, overlap, region)
    # windows are ordered and equally long: the first starts and the last stops the canvas
    canvas = Span(windows[0].start, windows[-1].stop)
    margin = BICUBIC_MARGIN if scale > 1 else 0
    need = Span(canvas.start // scale - margin, -(-canvas.stop // scale) + margin)
    idx = reflect_index(np.arange(need.start, need.stop), lr_length)
    return AxisBlock(block, canvas, len(windows), need, Span(int(idx.min()), int(idx.max()) + 1))


def axis_blocks(
    length: int,
    lr_length: int,
    scale: int,
    tile_size: int,
    overlap: int,
    context: int,
    block: int,
) -> list[AxisBlock]:
    """:func:`axis_block` of every block of ``block`` HR pixels along an axis."""
    geometry = (length, lr_length, scale, tile_size, overlap, context)
    return [axis_block(span, *geometry) for span in block_spans(length, block)]


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
    ay, ax = (
        axis_block(b, n, m, scale, tile_size, overlap, context)
        for b, n, m in zip(block, hr_shape, lr_shape, strict=True)
    )
    region = (
        Span(block[0].start - context, block[0].stop + context),
        Span(block[1].start - context, block[1].stop + context),
    )
    tiles = tile_grid(hr_shape, tile_size, overlap, region=region)
    return BlockJob(
        plane,
        block,
        (ay.canvas, ax.canvas),
        tuple(tiles),
        (ay.lr_need, ax.lr_need),
        (ay.lr_read, ax.lr_read),
        lr_shape,
    )


@dataclass(frozen=True)
class BlockTiles(Mapping[tuple[int, ...], int]):
    """Tiles each block samples, keyed by its chunk index ``(*lead_index, i, j)``.

    Computed from the per-axis counts (block (i, j) samples ``rows[i] * cols[j]`` tiles
    in every plane), so it holds O(blocks per axis), not one entry per block.
    """

    lead: tuple[int, ...]
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    def __getitem__(self, index: tuple[int, ...]) -> int:
        shape = (*self.lead, len(self.rows), len(self.cols))
        inside = len(index) == len(shape) and all(
            0 <= k < n for k, n in zip(index, shape, strict=True)
        )
        if not inside:
            raise KeyError(index)
        return self.rows[index[-2]] * self.cols[index[-1]]

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        return iter(np.ndindex(*self.lead, len(self.rows), len(self.cols)))

    def __len__(self) -> int:
        return math.prod(self.lead) * len(self.rows) * len(self.cols)

    @property
    def total(self) -> int:
        """Tiles of all blocks (the total of a progress bar)."""
        return math.prod(self.lead) * sum(self.rows) * sum(self.cols)
