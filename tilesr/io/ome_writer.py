"""One-shot multiscale OME-Zarr writer and the helpers both writers share.

Level 0 is written from the (lazy) input; every coarser level is a 2x mean in y/x of
the level before it, read back from the store, so the pyramid never recomputes the
input. Writes go through the scheduler configured with ``dask.config.set``.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from tilesr.errors import TilesrError
from tilesr.io.axes import check_axes, check_format, check_pixel_size, multiscales_attrs
from tilesr.progress import Progress

# stop downsampling once the smaller of y/x would drop below this
PYRAMID_MIN_SIDE = 256
# largest zarr chunk edge along y/x: keeps chunks a few MB for viewers
MAX_CHUNK_EDGE = 1024
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray", ".zattrs")


def write_ome_zarr(
    path: str | os.PathLike[str],
    image: da.Array | np.ndarray[Any, Any],
    *,
    axes: str,
    pixel_sizes: Mapping[str, float] | None = None,
    units: Mapping[str, str] | None = None,
    overwrite: bool = False,
    zarr_format: int = 3,
    attrs: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> None:
    """Write ``image`` as a multiscale OME-Zarr image.

    Parameters
    ----------
    path
        Output folder (``.zarr``).
    image
        Pixels; dask arrays are written chunk by chunk without loading the whole image.
    axes
        Letters from ``tczyx`` ending with ``yx``, one per dimension.
    pixel_sizes
        Physical pixel size per axis of level 0 (default 1.0).
    units
        NGFF unit name per axis (e.g. ``{"y": "micrometer", "x": "micrometer"}``).
    overwrite
        Replace an existing zarr store at ``path``; without it an existing path is refused.
    zarr_format
        3 (default) writes NGFF 0.5, 2 writes NGFF 0.4.
    attrs
        Extra group attributes (e.g. ``{"tilesr": {...}}`` provenance).
    progress
        Show a progress bar over the level-0 chunks while writing.

    Raises
    ------
    TilesrError
        If the path exists (without ``overwrite``), is not a zarr store, or the axes,
        pixel sizes or format are invalid.
    """
    import zarr

    out = Path(path)
    array = image if isinstance(image, da.Array) else da.from_array(np.asarray(image))
    check_axes(axes, tuple(array.shape), source="write_ome_zarr")
    sizes = check_sizes(pixel_sizes, axes)
    check_format(zarr_format)
    if array.dtype.kind not in "uif":
        raise TilesrError(f"cannot write pixel type {array.dtype} (need integer or floating point)")
    prepare_output_path(out, overwrite=overwrite)

    group = zarr.open_group(str(out), mode="w", zarr_format=zarr_format)  # type: ignore[arg-type]
    shapes = pyramid_shapes(tuple(array.shape))
    chunks = store_chunks(array)
    target = create_level(
        group, "0", shape=array.shape, chunks=chunks, dtype=array.dtype, axes=axes
    )
    level0 = array.rechunk(chunks)
    if not progress:
        da.store(level0, target, lock=False)
    else:
        bar = Progress(unit="chunk", desc="writing")
        with bar.shown(math.prod(level0.numblocks)):
            da.store(level0.map_blocks(_counted, bar, dtype=level0.dtype), target, lock=False)
    write_pyramid(group, shapes, axes=axes)
    paths = [str(i) for i in range(len(shapes))]
    add_attributes(
        group,
        multiscales_attrs(
            axes,
            paths,
            pixel_sizes=sizes,
            units=units,
            zarr_format=zarr_format,
            name=out.stem,
            extra=attrs,
        ),
    )


def check_sizes(pixel_sizes: Mapping[str, float] | None, axes: str) -> dict[str, float]:
    """Pixel sizes restricted to ``axes``, each positive and finite."""
    sizes = {}
    for axis, value in (pixel_sizes or {}).items():
        if axis in axes and axis != "c":
            sizes[axis] = check_pixel_size(value, axis, source="output")
    return sizes


def prepare_output_path(out: Path, *, overwrite: bool) -> None:
    """Refuse an existing output unless ``overwrite``; then remove it if it is a zarr store."""
    if not out.exists():
        return
    if not overwrite:
        raise TilesrError(f"{out} exists; use --overwrite to replace it")
    remove_store(out)


def remove_store(out: Path) -> None:
    """Delete a zarr store, refusing anything that does not look like one.

    The store is first renamed to a hidden sibling (atomic), then deleted: a kill during
    the deletion leaves that sibling (removed by the next call), never a half-deleted
    folder at ``out`` that no longer looks like a zarr store and so could not be replaced.
    """
    if not (
        out.is_dir() and (any((out / m).exists() for m in _ZARR_MARKERS) or not any(out.iterdir()))
    ):
        raise TilesrError(f"{out} exists and is not a zarr store; refusing to delete it")
    for left in out.parent.glob(f".{out.name}.tilesr-removing-*"):
        shutil.rmtree(left, ignore_errors=True)  # what a killed deletion left
    doomed = out.with_name(f".{out.name}.tilesr-removing-{os.getpid()}")
    out.rename(doomed)
    shutil.rmtree(doomed)


def pyramid_shapes(
    shape: tuple[int, ...], min_side: int = PYRAMID_MIN_SIDE
) -> list[tuple[int, ...]]:
    """Level shapes: halve y and x (rounding down) while the smaller side exceeds ``min_side``."""
    shapes = [tuple(shape)]
    while min(shapes[-1][-2:]) > min_side and min(shapes[-1][-2:]) >= 2:
        last = shapes[-1]
        shapes.append((*last[:-2], last[-2] // 2, last[-1] // 2))
    return shapes


def store_chunks(array: da.Array) -> tuple[int, ...]:
    """Zarr chunks every dask chunk boundary of ``array`` falls on, at most MAX_CHUNK_EDGE in y/x.

    Aligning zarr chunks to dask blocks means no two tasks ever write the same zarr
    chunk, which is what makes lock-free parallel (and distributed) writes safe.
    """
    out = []
    for i, dim_chunks in enumerate(array.chunks):
        step = 0
        for c in dim_chunks[:-1]:
            step = math.gcd(step, c)
        step = step or dim_chunks[0]
        if i >= array.ndim - 2:
            while step > MAX_CHUNK_EDGE and step % 2 == 0:
                step //= 2
        out.append(max(1, step))
    return tuple(out)


def cast_to(block: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """Convert to ``dtype``: integers are rounded and clipped to their range, never wrapped."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        values = np.nan_to_num(
            np.asarray(block, dtype=np.float64), nan=0.0, posinf=info.max, neginf=info.min
        )
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    if dtype.kind == "f":
        finfo = np.finfo(dtype)
        values = np.asarray(block)
        if values.dtype.itemsize > dtype.itemsize:
            values = np.clip(values, finfo.min, finfo.max)
        return values.astype(dtype)
    return np.asarray(block).astype(dtype)


def downsample2(array: da.Array) -> da.Array:
    """2x mean in y/x (odd trailing rows/columns dropped), in the input's dtype."""
    factors = {array.ndim - 2: 2, array.ndim - 1: 2}
    means = da.coarsen(np.mean, array.astype(np.float64), factors, trim_excess=True)
    return means.map_blocks(cast_to, array.dtype, dtype=array.dtype)


def add_attributes(group: Any, attrs: dict[str, Any]) -> None:
    """Merge ``attrs`` into the group's attributes in one atomic metadata write.

    ``group.attrs.update`` is ``MutableMapping.update``: one metadata write per key, so a
    process killed between them leaves a half-updated group (e.g. the NGFF image declared
    while the status still says incomplete).
    """
    group.update_attributes(attrs)


def create_level(
    group: Any,
    path: str,
    *,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: Any,
    axes: str,
    overwrite: bool = False,
) -> Any:
    """Create one pyramid level array as NGFF wants it: zarr v3 arrays name their dimensions
    (0.5), zarr v2 chunk keys are nested with "/" (0.4's ``dimension_separator``)."""
    extra: dict[str, Any] = {}
    if group.metadata.zarr_format == 3:
        extra["dimension_names"] = list(axes)
    else:
        extra["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    return group.create_array(
        path, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=overwrite, **extra
    )


def write_pyramid(group: Any, shapes: list[tuple[int, ...]], *, axes: str) -> None:
    """Write levels 1.. of ``group`` from level 0 already in the store, each from the one before."""
    level0 = group["0"]
    chunks = tuple(level0.chunks)
    for level in range(1, len(shapes)):
        source = da.from_zarr(group[str(level - 1)])
        # read whole 2x2 blocks of the level above so that each output chunk is one task
        src_chunks = tuple(
            c if i < source.ndim - 2 else min(2 * c, n)
            for i, (c, n) in enumerate(zip(chunks, source.shape, strict=True))
        )
        smaller = downsample2(source.rechunk(src_chunks))
        level_chunks = tuple(min(c, n) for c, n in zip(chunks, shapes[level], strict=True))
        target = create_level(
            group,
            str(level),
            shape=shapes[level],
            chunks=level_chunks,
            dtype=level0.dtype,
            axes=axes,
            overwrite=True,
        )
        da.store(smaller.rechunk(level_chunks), target, lock=False)


def _counted(block: np.ndarray[Any, Any], progress: Progress) -> np.ndarray[Any, Any]:
    """``block`` unchanged, counted as one chunk done."""
    report = progress.reporter()
    report(1.0)
    report.flush()
    return block
