"""Tile windows: small frozen values laid on a grid anchored to global image coordinates.

A tile grid depends only on the image size, the tile size and the overlap, never on
which block of the image is being processed, so a pixel sees the same tiles (and the
same noise) wherever it is computed. Along each axis tiles start at multiples of the
stride ``tile - overlap``; the last one is shifted back to end at the image edge. An
image axis shorter than one tile gets a single tile that reaches past the edge (the
engine pads the canvas for it).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
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

    def intersects(self, other: Span) -> bool:
        return self.start < other.stop and other.start < self.stop


@dataclass(frozen=True)
class TileWindow:
    """One tile: the window of the image the network sees, in global (image) pixels.

    Neighbouring windows overlap by the grid's overlap; the blend weights
    (:mod:`tilesr.engine.blending`) decide how much each contributes to a pixel.
    """

    outer: tuple[Span, Span]

    def outer_slices(self, origin: tuple[int, int] = (0, 0)) -> tuple[slice, slice]:
        """Slices of the window into an array whose corner is at global ``origin``."""
        return (self.outer[0].slice(origin[0]), self.outer[1].slice(origin[1]))


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
def _axis_spans(length: int, tile_size: int, overlap: int) -> tuple[Span, ...]:
    """The windows along one axis."""
    return tuple(Span(s, s + tile_size) for s in axis_starts(length, tile_size, overlap))


@lru_cache(maxsize=64)
def _axis_bounds(length: int, tile_size: int, overlap: int) -> tuple[list[int], list[int]]:
    """Starts and stops of the windows along one axis (both non-decreasing)."""
    spans = _axis_spans(length, tile_size, overlap)
    return [s.start for s in spans], [s.stop for s in spans]


def axis_windows(length: int, tile_size: int, overlap: int, region: Span) -> tuple[Span, ...]:
    """The windows along one axis that intersect ``region``, in order (by bisection: a
    block of a huge image finds its few rows of tiles without scanning them all)."""
    starts, stops = _axis_bounds(length, tile_size, overlap)
    first = bisect_right(stops, region.start)  # the first window ending after the start
    last = bisect_left(starts, region.stop)  # the first window starting at or after the stop
    return _axis_spans(length, tile_size, overlap)[first:last]


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
        if region is None:
            per_axis.append(_axis_spans(int(n), tile_size, overlap))
        else:
            per_axis.append(axis_windows(int(n), tile_size, overlap, region[axis]))
    return [TileWindow(outer=(oy, ox)) for oy, ox in product(per_axis[0], per_axis[1])]


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
