"""Lazy image readers: OME-Zarr (NGFF 0.4 / 0.5), plain zarr arrays, TIFF / OME-TIFF / BigTIFF.

Every reader returns a dask array whose tasks open the file *by path* inside the
worker, so graphs pickle for distributed runs and nothing is read until computed.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from tilesr.errors import TilesrError, first_line
from tilesr.io.axes import (
    AXIS_LETTERS,
    check_axes,
    check_pixel_size,
    convert_length,
    dataset_transform,
    multiscale_axes,
    normalize_unit,
    parse_multiscales,
)

# chunk edge the readers aim for along y and x: large enough for few tasks, small
# enough that a chunk of a whole-slide image fits comfortably in memory
TARGET_CHUNK = 1024
# most dask chunks an input may have (2**20 chunks of 1024 x 1024 are 1.1e12 pixels: a
# 1M x 1M slide or a 10k^3 volume): a header declaring an absurd shape is refused before
# dask spells out its chunk tuples, which for [1e12, 1e12] take minutes and gigabytes
MAX_CHUNKS = 2**20
_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2", ".ome.tif", ".ome.tiff")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_log = logging.getLogger("tilesr")


@dataclass(frozen=True)
class InputImage:
    """A lazily opened image and what its metadata says about it.

    Attributes
    ----------
    data
        The pixels, never loaded as a whole.
    axes
        Lowercase letters from ``tczyx`` ending with ``yx``, one per dimension of ``data``.
    pixel_sizes
        Physical pixel size of every non-channel axis (1.0 where the file says nothing).
    units
        NGFF unit name per axis where the file declares one.
    translation
        Physical position of the centre of the first pixel along each non-channel axis
        where the file gives one (NGFF ``translation``, OME-TIFF ``PositionX/Y/Z``), in
        the units of the pixel sizes.
    path
        The path the image was opened from.
    kind
        ``"ome-zarr"``, ``"zarr"``, ``"ome-tiff"``, ``"imagej-tiff"`` or ``"tiff"``.
    """

    data: da.Array
    axes: str
    pixel_sizes: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    path: str = ""
    kind: str = ""
    translation: dict[str, float] = field(default_factory=dict)


def open_image(
    path: str | os.PathLike[str], *, axes: str | None = None, level: int = 0
) -> InputImage:
    """Open an OME-Zarr, zarr or TIFF image lazily.

    Parameters
    ----------
    path
        An OME-Zarr image (NGFF 0.4 with zarr v2, or 0.5 with zarr v3), a plain zarr
        array, or a TIFF / OME-TIFF / ImageJ / BigTIFF file.
    axes
        Override the axes the metadata declare (e.g. ``"zyx"``); required for plain
        arrays with more than two dimensions and for TIFFs whose axes are ambiguous.
        For TIFFs with RGB samples, the samples axis is moved in front of ``yx`` first.
    level
        Pyramid level to read (0 = full resolution).

    Returns
    -------
    InputImage
        The lazily read image with its axes and physical pixel sizes.

    Raises
    ------
    TilesrError
        If the path is missing, not an image, corrupt, has an unsupported dtype, empty
        axes, absurd metadata, or ``level`` is out of range.
    """
    p = Path(path)
    if not isinstance(level, int) or isinstance(level, bool) or level < 0:
        raise TilesrError(f"level must be a non-negative integer, got {level!r}")
    if not p.exists():
        raise TilesrError(f"input {str(p)!r} does not exist")
    if p.is_dir():
        image = _open_zarr(p, axes=axes, level=level)
    elif _is_tiff(p):
        image = _open_tiff(p, axes=axes, level=level)
    elif (p / "zarr.json").exists() or p.suffix == ".zarr":
        image = _open_zarr(p, axes=axes, level=level)
    else:
        raise TilesrError(f"{str(p)!r} is not a supported image (expected OME-Zarr, zarr or TIFF)")
    _check_array(image.data, source=str(p))
    return image


def _check_array(data: da.Array, *, source: str) -> None:
    if data.dtype.kind not in "uif":
        raise TilesrError(
            f"{source}: pixel type {data.dtype} is not supported (need integer or floating point)"
        )
    if any(s == 0 for s in data.shape):
        raise TilesrError(f"{source}: image has an empty axis (shape {data.shape})")
    if data.ndim < 2:
        raise TilesrError(f"{source}: need at least two dimensions, got shape {data.shape}")


def _is_tiff(path: Path) -> bool:
    if path.name.lower().endswith(_TIFF_SUFFIXES):
        return True
    try:
        with path.open("rb") as fh:
            return fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def check_chunk_count(shape: tuple[int, ...], chunks: tuple[int, ...], *, source: str) -> None:
    """Refuse images whose dask graph would have more than :data:`MAX_CHUNKS` chunks."""
    count = math.prod(-(-int(s) // max(1, int(c))) for s, c in zip(shape, chunks, strict=True))
    if count > MAX_CHUNKS:
        raise TilesrError(
            f"{source}: shape {tuple(shape)} would make {count} chunks of {tuple(chunks)} "
            f"(at most {MAX_CHUNKS}); the metadata are implausible or the image is too large"
        )


def read_chunks(shape: tuple[int, ...], native: tuple[int, ...]) -> tuple[int, ...]:
    """Dask chunks: one plane deep, about ``TARGET_CHUNK`` in y/x, whole native chunks."""
    out = []
    for i, (size, nat) in enumerate(zip(shape, native, strict=True)):
        nat = max(1, min(int(nat), size))
        if i < len(shape) - 2:
            out.append(1)
            continue
        if nat > 4 * TARGET_CHUNK:
            # e.g. full-width TIFF strips: splitting them rereads strips but bounds memory
            out.append(min(size, TARGET_CHUNK))
        else:
            out.append(min(size, nat * max(1, TARGET_CHUNK // nat)))
    return tuple(out)


# ---------------------------------------------------------------- zarr / OME-Zarr


def _open_zarr(path: Path, *, axes: str | None, level: int) -> InputImage:
    import zarr

    source = str(path)
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises many types for non-stores
        raise TilesrError(f"{source!r} is not a readable zarr store: {first_line(exc)}") from None
    if isinstance(node, zarr.Array):
        return _plain_zarr(node, source, axes=axes, level=level)
    multiscale = parse_multiscales(dict(node.attrs), source=source)
    if multiscale is None:
        raise TilesrError(f"{source}: zarr group without OME-NGFF 'multiscales' metadata")
    array, ds_path = _ngff_dataset(path, multiscale, level, source=source)
    shape = tuple(array.shape)
    names, units = multiscale_axes(multiscale, source=source)
    if len(names) != len(shape):
        raise TilesrError(
            f"{source}: metadata declares {len(names)} axes {names} but dataset {ds_path!r} "
            f"has shape {shape}"
        )
    scale, shift = dataset_transform(multiscale, level, names, source=source)
    if axes is None:
        axes = "".join(names)
        if not all(len(n) == 1 for n in names):
            raise TilesrError(f"{source}: axes {names} are not among 'tczyx'; pass --axes")
    else:
        # the override renames the axes; the scales and units stay with their positions
        units = {axes[names.index(k)]: v for k, v in units.items()}
    check_axes(axes, shape, source=source)
    sizes = {a: s for a, s in zip(axes, scale, strict=True) if a != "c"}
    origin = {a: t for a, t in zip(axes, shift, strict=True) if a != "c" and t}
    chunks = read_chunks(shape, tuple(array.chunks))
    check_chunk_count(shape, chunks, source=source)
    data = _zarr_dask(array, chunks, source=f"{source}/{ds_path}")
    kept_units = {a: u for a, u in units.items() if a in sizes}
    return InputImage(data, axes, sizes, kept_units, source, "ome-zarr", origin)


def _plain_zarr(node: Any, source: str, *, axes: str | None, level: int) -> InputImage:
    """A zarr array without NGFF metadata: level 0 only, axes ``yx`` unless given."""
    if level != 0:
        raise TilesrError(
            f"{source}: level {level} requested but a plain zarr array has only level 0"
        )
    shape = tuple(node.shape)
    if axes is None:
        if len(shape) != 2:
            raise TilesrError(
                f"{source}: plain zarr array of shape {shape} has no axes metadata; "
                "pass --axes (e.g. 'zyx')"
            )
        axes = "yx"
    check_axes(axes, shape, source=source)
    chunks = read_chunks(shape, tuple(node.chunks))
    check_chunk_count(shape, chunks, source=source)
    data = _zarr_dask(node, chunks, source=source)
    return InputImage(data, axes, {a: 1.0 for a in axes if a != "c"}, {}, source, "zarr")


def _ngff_dataset(
    path: Path, multiscale: dict[str, Any], level: int, *, source: str
) -> tuple[Any, str]:
    """The zarr array of pyramid ``level`` and its path in the store."""
    import zarr

    datasets = multiscale.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise TilesrError(f"{source}: multiscales metadata lists no datasets")
    if level >= len(datasets):
        raise TilesrError(
            f"{source}: level {level} is out of range; the image has {len(datasets)} "
            f"level(s), 0 to {len(datasets) - 1}"
        )
    entry = datasets[level]
    ds_path = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(ds_path, str):
        raise TilesrError(f"{source}: dataset {level} of the multiscales metadata has no path")
    try:
        return zarr.open_array(store=str(path), path=ds_path, mode="r"), ds_path
    except Exception as exc:
        raise TilesrError(
            f"{source}: dataset {ds_path!r} cannot be opened: {first_line(exc)}"
        ) from None


@dataclass(frozen=True)
class _ZarrRegion:
    """A zarr array for ``da.from_array`` whose failing reads name the file in a TilesrError.

    A chunk that does not decode, or metadata that contradict the stored chunks, fail
    only when read (inside a task); they must still reach the user as one line.
    """

    array: Any
    source: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray[Any, Any]:
        try:
            return np.asarray(self.array[key])
        except Exception as exc:  # codecs and zarr raise many types for damaged stores
            raise TilesrError(f"cannot read {self.source}: {first_line(exc)}") from None


def _zarr_dask(array: Any, chunks: tuple[int, ...], *, source: str) -> da.Array:
    """Lazy dask view of a zarr array (the array pickles by its store path)."""
    if any(int(c) < 1 for c in array.chunks):
        raise TilesrError(f"{source}: invalid chunk shape {tuple(array.chunks)} in the metadata")
    region = _ZarrRegion(array, source)
    return da.from_array(
        region,
        chunks=chunks,
        meta=np.empty((0,) * region.ndim, dtype=region.dtype),
        asarray=False,
        fancy=False,
        lock=False,
        inline_array=True,
        name="zarr-"
        + da.core.tokenize(source, region.shape, str(region.dtype), chunks, _mtime(source)),
    )


def _mtime(source: str) -> int:
    """Newest modification time of the array's metadata: a rewritten array gets new keys."""
    stamps = [
        os.stat(p).st_mtime_ns
        for p in (Path(source) / "zarr.json", Path(source) / ".zarray")
        if p.exists()
    ]
    return max(stamps, default=0)


# ---------------------------------------------------------------- TIFF

_TIFF_CACHE: dict[tuple[Any, ...], tuple[Any, Any, threading.Lock]] = {}
_TIFF_CACHE_LOCK = threading.Lock()


@atexit.register
def _close_tiff_cache() -> None:
    with _TIFF_CACHE_LOCK:
        for store, _, _ in _TIFF_CACHE.values():
            store.close()
        _TIFF_CACHE.clear()


def _tiff_level_array(path: str, level: int) -> tuple[Any, threading.Lock]:
    """A zarr view of one TIFF pyramid level, opened once per process and file version."""
    import tifffile
    import zarr

    stat = os.stat(path)
    key = (path, level, stat.st_mtime_ns, stat.st_size)
    with _TIFF_CACHE_LOCK:
        hit = _TIFF_CACHE.get(key)
        if hit is None:
            store = tifffile.imread(path, aszarr=True, series=0, level=level)
            hit = (store, zarr.open_array(store=store, mode="r"), threading.Lock())
            _TIFF_CACHE[key] = hit
    return hit[1], hit[2]


@dataclass(frozen=True)
class _TiffRegion:
    """Array-like view of a TIFF level for ``da.from_array``: pickles as its path."""

    path: str
    level: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray[Any, Any]:
        try:
            array, lock = _tiff_level_array(self.path, self.level)
            # one file handle per process: seeks and reads must not interleave
            with lock:
                return np.asarray(array[key])
        except Exception as exc:
            raise TilesrError(f"cannot read {self.path}: {first_line(exc)}") from None


@dataclass(frozen=True)
class _TiffHeader:
    """What a TIFF says about the level to read, before any pixel is read."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    axes: str  # tifffile's axes letters (upper case)
    sizes: dict[str, float]  # physical pixel size by tifffile axis letter
    units: dict[str, str]
    kind: str
    chunks: tuple[int, ...]  # native tiles, strips or pages
    singletons: str = ""  # tifffile letters of the size-1 axes its squeezed shape leaves out
    origin: dict[str, float] = field(default_factory=dict)  # stage position by tifffile letter


def _open_tiff(path: Path, *, axes: str | None, level: int) -> InputImage:
    source = str(path)
    head = _tiff_header(path, level, source=source)
    if head.dtype.kind not in "uif":
        raise TilesrError(
            f"{source}: pixel type {head.dtype} is not supported (need integer or floating point)"
        )
    if any(s == 0 for s in head.shape):
        raise TilesrError(f"{source}: image has an empty axis (shape {head.shape})")
    data = _tiff_dask(head, source, level)
    tif_axes = head.axes
    if "S" in tif_axes:
        # RGB samples: put them in front of yx so that a channel axis can name them
        s = tif_axes.index("S")
        order = [i for i in range(len(tif_axes)) if i != s]
        order.insert(len(order) - 2, s)
        data = data.transpose(order)
        tif_axes = "".join(tif_axes[i] for i in order)
        if axes is None:
            raise TilesrError(
                f"{source}: TIFF stores RGB samples (tifffile axes {head.axes!r}, shape "
                f"{head.shape}); tilesr restores single-channel planes: pass --axes naming the "
                f"samples 'c', e.g. --axes {_rgb_example(tif_axes)!r}"
            )
    data, tif_axes = _named_singletons(data, tif_axes, axes, head.singletons)
    axes, sizes, units = _tiff_axes(axes, tif_axes, head, source=source)
    check_axes(axes, tuple(data.shape), source=source)
    # the stage position follows the axes as the physical sizes do (by position)
    letters = dict(zip(tif_axes, axes, strict=True))
    origin = {letters[k]: v for k, v in head.origin.items() if letters.get(k, "c") != "c"}
    return InputImage(data, axes, sizes, units, source, head.kind, origin)


def _tiff_dask(head: _TiffHeader, source: str, level: int) -> da.Array:
    """The lazy pixels of one TIFF level, read by path inside the tasks."""
    region = _TiffRegion(source, level, head.shape, head.dtype)
    chunks = read_chunks(head.shape, head.chunks)
    check_chunk_count(head.shape, chunks, source=source)
    return da.from_array(
        region,
        chunks=chunks,
        meta=np.empty((0,) * len(head.shape), dtype=head.dtype),
        asarray=False,
        fancy=False,
        lock=False,
        inline_array=True,
        name=f"tiff-{da.core.tokenize(source, level, os.stat(source).st_mtime_ns)}",
    )


def _named_singletons(
    data: da.Array, tif_axes: str, axes: str | None, singletons: str
) -> tuple[da.Array, str]:
    """Size-1 axes of the file that tifffile squeezes away come back where ``axes`` names them.

    An OME or ImageJ TIFF declares all its axes, but tifffile drops those of size 1 (a
    single channel, a single time point); a user who names one (``--axes czyx``) gets it
    in the output, as the input had it.
    """
    if axes is None or len(axes) <= data.ndim:
        return data, tif_axes
    added = [i for i, a in enumerate(axes) if a.upper() in singletons and a.upper() not in tif_axes]
    if len(axes) - len(added) != data.ndim:
        return data, tif_axes  # not (only) singletons: check_axes refuses, naming the shape
    kept = iter(tif_axes)
    letters = "".join(axes[i].upper() if i in added else next(kept) for i in range(len(axes)))
    index = tuple(None if i in added else slice(None) for i in range(len(axes)))
    return data[index], letters


def _tiff_header(path: Path, level: int, *, source: str) -> _TiffHeader:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise TilesrError(f"{source} is not a readable TIFF: it holds no image series")
            series = tif.series[0]
            levels = series.levels
            if level >= len(levels):
                raise TilesrError(
                    f"{source}: level {level} is out of range; the image has {len(levels)} "
                    f"level(s), 0 to {len(levels) - 1}"
                )
            chosen = levels[level]
            shape, tif_axes = tuple(chosen.shape), series.axes
            _check_not_truncated(chosen, path)
            sizes, units, kind = _tiff_physical(tif, tif_axes, source=source)
            origin = _ome_origin(tif, units, source=source)
            for letter in "YX":
                # the metadata describe level 0; coarser levels have proportionally larger pixels
                if letter in sizes and letter in tif_axes:
                    i = tif_axes.index(letter)
                    sizes[letter] *= levels[0].shape[i] / shape[i]
            native = _tiff_native_chunks(series, level)
            dtype = np.dtype(chosen.dtype)
            full = zip(series.get_axes(False), series.get_shape(False), strict=True)
            singletons = "".join(a for a, n in full if n == 1 and a not in tif_axes + "S")
    except TilesrError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise TilesrError(f"{source} is not a readable TIFF: {first_line(exc)}") from None
    return _TiffHeader(shape, dtype, tif_axes, sizes, units, kind, native, singletons, origin)


def _tiff_axes(
    axes: str | None, tif_axes: str, head: _TiffHeader, *, source: str
) -> tuple[str, dict[str, float], dict[str, str]]:
    """tilesr axes (guessed or the override) and the physical sizes and units they keep."""
    sizes, units = head.sizes, head.units
    if axes is None:
        axes = _guess_axes(tif_axes)
        if "?" in axes:
            example = AXIS_LETTERS[-len(tif_axes) :]
            raise TilesrError(
                f"{source}: the TIFF does not say what its axes are (shape {head.shape}, "
                f"tifffile axes {head.axes!r}); pass --axes naming each one, e.g. {example!r}"
            )
        kept_sizes = {a: sizes.get(a.upper(), 1.0) for a in axes if a != "c"}
        kept_units = {a: units[a.upper()] for a in axes if a.upper() in units and a != "c"}
        if axes != _guess_axes(tif_axes, guess=False):
            _log.warning(_guess_notice(source, head, axes, kept_units))
        return axes, kept_sizes, kept_units
    # the override renames axes; physical sizes follow the names tifffile gave
    kept_sizes, kept_units = {}, {}
    for new, old in zip(axes, tif_axes, strict=False):
        if new == "c":
            continue
        kept_sizes[new] = sizes.get(old, 1.0)
        if old in units:
            kept_units[new] = units[old]
    return axes, kept_sizes, kept_units


def _tiff_native_chunks(series: Any, level: int) -> tuple[int, ...]:
    """Chunk shape of tifffile's zarr view of one level: tiles, strips or whole pages."""
    import zarr

    store = series.aszarr(level=level)
    try:
        return tuple(zarr.open_array(store=store, mode="r").chunks)
    finally:
        store.close()


def _guess_axes(tif_axes: str, *, guess: bool = True) -> str:
    """tifffile axis letters to tilesr's, '?' where unknown.

    With ``guess``, the one case that is not ambiguous is taken: a 3-D TIFF whose leading
    axis tifffile cannot name (Q, I: "some sequence of planes") is a z-stack; more planes
    axes of unknown meaning than that (4-D and up) stay unknown.
    """
    out = [{"T": "t", "C": "c", "Z": "z", "Y": "y", "X": "x"}.get(a, "?") for a in tif_axes]
    if guess and len(tif_axes) == 3 and tif_axes[0] in "QI":
        out[0] = "z"
    return "".join(out)


def _rgb_example(tif_axes: str) -> str:
    """An --axes proposal for an RGB TIFF: samples as c, unknown axes as z, then t."""
    spare = iter("zt")
    known = _guess_axes(tif_axes.replace("S", "C"), guess=False)
    return "".join(next(spare, "?") if a == "?" else a for a in known)


def _guess_notice(source: str, head: _TiffHeader, axes: str, units: dict[str, str]) -> str:
    """The one line saying what was guessed about a TIFF without axis metadata."""
    if not units:
        sizes = "pixel sizes are unknown (1, no unit)"
    else:
        sizes = "the z spacing is unknown (1, no unit)"
    return (
        f"{source} has no axis metadata: its {head.shape[0]} planes are read as z (axes "
        f"{axes!r}) and {sizes}; pass --axes if they are not a z-stack (e.g. 'tyx')"
    )


def _check_not_truncated(level: Any, path: Path) -> None:
    """Refuse a TIFF whose image data would run past the end of the file."""
    size = path.stat().st_size
    end = 0
    offset = getattr(level, "dataoffset", None)
    if offset is not None:
        end = int(offset) + int(level.nbytes)
    else:
        for page in level.pages:
            if page is None:
                continue
            for off, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                end = max(end, int(off) + int(count))
    if end > size:
        raise TilesrError(
            f"{path} is truncated: image data end at byte {end} but the file has {size} bytes"
        )


def _tiff_physical(
    tif: Any, tif_axes: str, *, source: str
) -> tuple[dict[str, float], dict[str, str], str]:
    """Pixel sizes and units keyed by tifffile axis letter, and the TIFF flavour."""
    sizes: dict[str, float] = {}
    units: dict[str, str] = {}
    if tif.is_ome and tif.ome_metadata:
        pixels = _ome_pixels(tif.ome_metadata)
        if pixels is not None:
            for axis, attr, default_unit in (
                ("X", "PhysicalSizeX", "µm"),
                ("Y", "PhysicalSizeY", "µm"),
                ("Z", "PhysicalSizeZ", "µm"),
                ("T", "TimeIncrement", "s"),
            ):
                if attr in pixels.attrib:
                    sizes[axis] = check_pixel_size(pixels.attrib[attr], axis.lower(), source=source)
                    unit = normalize_unit(pixels.attrib.get(attr + "Unit", default_unit))
                    if unit:
                        units[axis] = unit
        return sizes, units, "ome-tiff"
    page = tif.pages.first
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        unit = normalize_unit(meta.get("unit"))
        for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
            size = _resolution_size(page, tag)
            if size is not None:
                sizes[axis] = size
                if unit:
                    units[axis] = unit
        spacing = meta.get("spacing")
        if spacing is not None:
            sizes["Z"] = check_pixel_size(spacing, "z", source=source)
            if unit:
                units["Z"] = unit
        interval = meta.get("finterval")
        if interval:
            sizes["T"] = check_pixel_size(interval, "t", source=source)
            units["T"] = "second"
        return sizes, units, "imagej-tiff"
    unit_tag = page.tags.get("ResolutionUnit")
    if unit_tag is not None and int(unit_tag.value) == 3:  # centimetre: a physical resolution
        for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
            size = _resolution_size(page, tag)
            if size is not None:
                sizes[axis] = size * 1e4
                units[axis] = "micrometer"
    return sizes, units, "tiff"


def _ome_origin(tif: Any, units: dict[str, str], *, source: str) -> dict[str, float]:
    """The stage position of an OME-TIFF's first plane (PositionX/Y/Z), by tifffile letter.

    Taken as the position of the centre of pixel (0, 0) of the first plane, converted to
    the unit of that axis' pixel size; a position without a unit (OME's default "reference
    frame") is taken to be in that unit.
    """
    pixels = _ome_pixels(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else None
    planes = [] if pixels is None else [e for e in pixels if e.tag.endswith("Plane")]
    if not planes:
        return {}
    first = min(planes, key=lambda e: tuple(int(e.get(f"The{k}", 0)) for k in "TCZ"))
    origin = {}
    for axis in "XYZ":
        value = first.get(f"Position{axis}")
        if value is None:
            continue
        position = _check_position(value, axis, source=source)
        to = units.get(axis, "micrometer")
        unit = normalize_unit(first.get(f"Position{axis}Unit")) or to
        converted = convert_length(position, unit, to)
        if converted is None:
            _log.warning(f"{source}: Position{axis} in {unit} cannot be expressed in {to}; ignored")
            continue
        origin[axis] = converted
    return origin


def _check_position(value: str, axis: str, *, source: str) -> float:
    try:
        position = float(value)
    except ValueError:
        position = math.nan
    if not math.isfinite(position):
        raise TilesrError(f"{source}: Position{axis} must be a finite number, got {value!r}")
    return position


def _resolution_size(page: Any, tag: str) -> float | None:
    """Pixel size from a rational resolution tag (pixels per unit), None if absent or zero."""
    entry = page.tags.get(tag)
    if entry is None:
        return None
    num, den = entry.value
    if not num or not den:
        return None
    size = den / num
    return size if math.isfinite(size) and size > 0 else None


def _ome_pixels(xml: str) -> ET.Element | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for elem in root.iter():
        if elem.tag.rsplit("}", 1)[-1] == "Pixels":
            return elem
    return None
