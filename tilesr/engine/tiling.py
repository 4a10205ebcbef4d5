"""Tile windows: small frozen values laid on a grid anchored to global image coordinates.

A tile grid depends only on the image size, the tile size and the overlap, never on
which block of the image is being processed, so a pixel sees the same tiles (and the
same noise) wherever it is computed. Along each axis tiles start at multiples of the
stride ``tile - overlap``; the last one is shifted back to end at the image edge. An
image axis shorter than one tile gets a single tile that reaches past the edge (the
engine pads the canvas for it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

from tilesr.errors import TilesrError


@dataclass(frozen=True)
class Span:
    """A half-open integer interval [start, stop) along one axis."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def slice(self, origin: int = 0) -> slice:
        """This span as a slice into an array whose first element sits at ``origin``."""
        return slice(self.start - origin, self.stop - origin)

    def scaled(self, factor: int) -> Span:
        return Span(self.start * factor, self.stop * factor)

    def intersects(self, other: Span) -> bool:
        return self.start < other.stop and other.start < self.stop


@dataclass(frozen=True)
class TileWindow:
    """One tile: the ``outer`` window the network sees and the ``inner`` part it owns.

    The inner windows of a grid partition the image exactly (boundaries at the middle
    of each overlap); outer windows overlap by the grid's overlap. Coordinates are
    global (image) pixels; ``index`` is the tile's (row, column) in the grid.
    """

    outer: tuple[Span, Span]
    inner: tuple[Span, Span]
    index: tuple[int, int]

    @property
    def halo(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Pixels of ``outer`` before and after ``inner`` along y and x."""
        (oy, ox), (iy, ix) = self.outer, self.inner
        return ((iy.start - oy.start, oy.stop - iy.stop), (ix.start - ox.start, ox.stop - ix.stop))

    def outer_slices(self, origin: tuple[int, int] = (0, 0)) -> tuple[slice, slice]:
        """Slices of the outer window into an array whose corner is at global ``origin``."""
        return (self.outer[0].slice(origin[0]), self.outer[1].slice(origin[1]))

    def inner_slices(self, origin: tuple[int, int] = (0, 0)) -> tuple[slice, slice]:
        """Slices of the inner window into an array whose corner is at global ``origin``."""
        return (self.inner[0].slice(origin[0]), self.inner[1].slice(origin[1]))

    def scaled(self, factor: int) -> TileWindow:
        """The same window on a grid ``factor`` times finer (LR to HR coordinates)."""
        return TileWindow(
            outer=(self.outer[0].scaled(factor), self.outer[1].scaled(factor)),
            inner=(self.inner[0].scaled(factor), self.inner[1].scaled(factor)),
            index=self.index,
        )


def check_tiling(tile_size: int, overlap: int) -> None:
    """Refuse geometry that leaves no stride, naming the values."""
    if tile_size < 1:
        raise TilesrError(f"tile size must be positive, got {tile_size}")
    if overlap < 0:
        raise TilesrError(f"overlap must be non-negative, got {overlap}")
    if overlap >= tile_size:
        raise TilesrError(
            f"overlap must be smaller than the tile size, got {overlap} versus {tile_size}"
        )


def axis_starts(length: int, tile_size: int, overlap: int) -> list[int]:
    """Start positions of the tiles along an axis of ``length`` pixels (global grid)."""
    check_tiling(tile_size, overlap)
    if length < 1:
        raise TilesrError(f"image axis must have at least one pixel, got {length}")
    if length <= tile_size:
        return [0]
    stride = tile_size - overlap
    starts = list(range(0, length - tile_size + 1, stride))
    if starts[-1] + tile_size < length:
        starts.append(length - tile_size)  # shifted back to end at the edge
    return starts


@lru_cache(maxsize=64)
def _axis_spans(length: int, tile_size: int, overlap: int) -> tuple[tuple[Span, Span], ...]:
    """(outer, inner) spans along one axis; inners meet in the middle of each overlap."""
    starts = axis_starts(length, tile_size, overlap)
    spans = []
    for k, start in enumerate(starts):
        lo = 0 if k == 0 else (start + starts[k - 1] + tile_size) // 2
        hi = length if k == len(starts) - 1 else (starts[k + 1] + start + tile_size) // 2
        spans.append((Span(start, start + tile_size), Span(lo, hi)))
    return tuple(spans)


def tile_grid(
    shape: tuple[int, int],
    tile_size: int,
    overlap: int,
    *,
    region: tuple[Span, Span] | None = None,
) -> list[TileWindow]:
    """Tiles of the global grid over an image of ``shape`` (y, x), in row-major order.

    Parameters
    ----------
    shape
        Image size (height, width) in pixels of the grid the tiles live on.
    tile_size, overlap
        Tile edge and the overlap between neighbours; the stride is their difference.
    region
        If given, only the tiles whose outer window intersects this region.

    Returns
    -------
    list of TileWindow
        Global coordinates; outer windows may reach past the image when an axis is
        shorter than one tile.
    """
    per_axis = []
    for axis, n in enumerate(shape):
        spans = list(enumerate(_axis_spans(int(n), tile_size, overlap)))
        if region is not None:
            # filter each axis first: a block of a huge image touches few rows and columns
            spans = [(k, s) for k, s in spans if s[0].intersects(region[axis])]
        per_axis.append(spans)
    return [
        TileWindow(outer=(oy, ox), inner=(ny, nx), index=(iy, ix))
        for (iy, (oy, ny)), (ix, (ox, nx)) in product(per_axis[0], per_axis[1])
    ]


def bounding_box(tiles: list[TileWindow]) -> tuple[Span, Span]:
    """The smallest window holding the outer windows of ``tiles``."""
    if not tiles:
        raise ValueError("no tiles")
    return (
        Span(min(t.outer[0].start for t in tiles), max(t.outer[0].stop for t in tiles)),
        Span(min(t.outer[1].start for t in tiles), max(t.outer[1].stop for t in tiles)),
    )


def block_spans(length: int, block: int) -> Iterator[Span]:
    """Consecutive blocks of ``block`` pixels along an axis (the last one shorter)."""
    for start in range(0, length, block):
        yield Span(start, min(start + block, length))
