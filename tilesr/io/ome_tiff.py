"""Outputs named ``*.tif`` / ``*.tiff``: a tiled, pyramidal OME-TIFF (Fiji, QuPath, napari).

A restoration is written block by block into a resumable OME-Zarr working store beside
the output, ``OUT.tilesr-partial.zarr`` (:mod:`tilesr.io.restored`: the same blocks,
markers, pyramid and status); once it is complete, it is copied tile by tile into
``OUT.tilesr-partial`` (BigTIFF, 256x256 zlib tiles, the pyramid levels as SubIFDs, OME-XML
with the physical sizes, stage positions and channel names), which is then renamed to
``OUT`` in one step and the working store removed. So ``OUT`` exists only when complete;
an interrupted run leaves the working store, which ``--resume`` continues (or, when it was
complete, just exports again), and ``--overwrite`` replaces an existing ``OUT`` only when
the new one is finished. The ``tilesr`` attributes (status, fingerprint, layout,
provenance) travel in a private TIFF tag, so ``--resume`` recognises a finished output.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tilesr.errors import TilesrError
from tilesr.io import faults
from tilesr.io.axes import dataset_transform, multiscale_axes, parse_multiscales
from tilesr.io.layout import OutputLayout
from tilesr.io.restored import (
    OutputState,
    WriteReport,
    check_fingerprint,
    image_name,
    output_state,
    read_tilesr_attrs,
)

TIFF_SUFFIXES = (".tif", ".tiff")
#: private TIFF tag (in the range for reusable private tags) holding the tilesr attributes
PROVENANCE_TAG = 65000
#: tile edge of the TIFF; one row of tiles across the image is read at a time
TILE = 256
#: NGFF unit names -> OME-XML unit symbols
_OME_UNITS = {
    "angstrom": "Å",
    "picometer": "pm",
    "nanometer": "nm",
    "micrometer": "µm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "second": "s",
    "millisecond": "ms",
    "microsecond": "µs",
    "nanosecond": "ns",
    "minute": "min",
    "hour": "h",
}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def is_tiff_output(path: str | os.PathLike[str]) -> bool:
    """Whether an output path names a TIFF (``.tif``, ``.tiff``, ``.ome.tif``...)."""
    return Path(path).name.lower().endswith(TIFF_SUFFIXES)


def working_store(out: Path) -> Path:
    """The resumable OME-Zarr a TIFF output is restored into before it is exported."""
    return out.with_name(out.name + ".tilesr-partial.zarr")


def partial_file(out: Path) -> Path:
    """Where the TIFF is written before it is renamed to ``out``."""
    return out.with_name(out.name + ".tilesr-partial")


@dataclass(frozen=True)
class TiffDecision:
    """What writing a TIFF output means.

    Attributes
    ----------
    state
        What to do with the working store (:func:`~tilesr.io.restored.output_state`).
    finished
        The TIFF exists, made with the same settings: nothing to do.
    """

    state: OutputState
    finished: bool = False


def tiff_output_state(
    out: Path, fingerprint: Mapping[str, Any], *, overwrite: bool = False, resume: bool = False
) -> TiffDecision:
    """Decide what writing the OME-TIFF ``out`` means, before any expensive computation."""
    store = working_store(out)
    if overwrite and resume:
        raise TilesrError("--overwrite and --resume exclude each other: choose one")
    if out.exists():
        if not _is_tiff_file(out):
            raise TilesrError(f"{out} exists and is not a TIFF; refusing to replace it")
        if resume:
            check_fingerprint(out, tiff_provenance(out), fingerprint)
            return TiffDecision(OutputState.COMPLETE, finished=True)
        if not overwrite:
            raise TilesrError(
                f"{out} exists; use --overwrite to replace it (once the new one is complete)"
            )
        # replaced by the rename at the very end: the old file stays until then
        return TiffDecision(output_state(store, fingerprint, overwrite=True))
    if store.exists() and not (resume or overwrite):
        raise TilesrError(
            f"an interrupted run left {store}; use --resume to continue it "
            "or --overwrite to start again"
        )
    return TiffDecision(output_state(store, fingerprint, overwrite=overwrite, resume=resume))


def tiff_provenance(path: Path) -> dict[str, Any]:
    """The tilesr attributes a finished TIFF output carries (its private tag)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages.first.tags.get(PROVENANCE_TAG)
            attrs = json.loads(tag.value) if tag is not None else None
    except Exception:  # tifffile and json raise many types for foreign files
        attrs = None
    if not isinstance(attrs, dict):
        raise TilesrError(
            f"cannot resume {path}: it is not a tilesr output; use --overwrite to replace it"
        )
    return attrs


def finished_tiff_report(path: Path) -> WriteReport:
    """What earlier runs wrote into a finished TIFF output, read back from its tag."""
    attrs = tiff_provenance(path)
    layout = OutputLayout.from_record(attrs["layout"])
    total = int(attrs.get("chunks_total", 0))
    return WriteReport(str(path), layout.shape, total, 0, total, int(attrs["levels"]), layout)


def export_ome_tiff(store: Path, out: Path) -> int:
    """Copy the finished OME-Zarr ``store`` into the OME-TIFF ``out``, atomically; the levels.

    Written to :func:`partial_file` and renamed: ``out`` never holds a partial TIFF.
    """
    import tifffile
    import zarr

    group = zarr.open_group(str(store), mode="r")
    attrs = dict(group.attrs)
    meta = read_tilesr_attrs(store, action="export")
    multiscale = parse_multiscales(attrs, source=str(store))
    if multiscale is None or meta.get("status") != "complete":
        raise TilesrError(f"cannot export {store}: it is not complete; use --resume")
    levels: list[Any] = [group[d["path"]] for d in multiscale["datasets"]]
    tags = [(PROVENANCE_TAG, "s", 0, json.dumps({**meta, "levels": len(levels)}), True)]
    options: dict[str, Any] = {
        "photometric": "minisblack",
        "compression": "zlib",
        "tile": (TILE, TILE),
    }
    partial = partial_file(out)
    try:
        with tifffile.TiffWriter(partial, bigtiff=True, ome=True) as tif:
            first, *coarser = levels
            ome = _ome_metadata(multiscale, meta, out, store=str(store))
            tif.write(
                _tiles(first),
                shape=first.shape,
                dtype=first.dtype,
                subifds=len(coarser),
                metadata=ome,
                extratags=tags,
                **options,
            )
            for level in coarser:
                tif.write(
                    _tiles(level), shape=level.shape, dtype=level.dtype, subfiletype=1, **options
                )
        _sync(partial)
        faults.fault_point("export")
        os.replace(partial, out)
        _sync(out.parent)
    finally:
        partial.unlink(missing_ok=True)
    return len(levels)


def _tiles(level: Any) -> Iterator[np.ndarray[Any, Any]]:
    """The TIFF's tiles of one level, plane by plane, row-major: one row of tiles read at a time."""
    height, width = level.shape[-2:]
    for plane in np.ndindex(*level.shape[:-2]):
        for y in range(0, height, TILE):
            band = np.asarray(level[(*plane, slice(y, y + TILE), slice(None))])
            for x in range(0, width, TILE):
                yield band[:, x : x + TILE]


def _ome_metadata(
    multiscale: Mapping[str, Any], meta: Mapping[str, Any], out: Path, *, store: str
) -> dict[str, Any]:
    """tifffile's OME-XML metadata: axes, physical sizes, stage positions, channel names."""
    names, units = multiscale_axes(multiscale, source=store)
    scale, shift = dataset_transform(multiscale, 0, names, source=store)
    axes = "".join(names)
    ome: dict[str, Any] = {"axes": axes.upper(), "Name": image_name(out)}
    for axis, key in (("x", "PhysicalSizeX"), ("y", "PhysicalSizeY"), ("z", "PhysicalSizeZ")):
        if axis in axes:
            ome[key] = scale[axes.index(axis)]
            if units.get(axis) in _OME_UNITS:
                ome[key + "Unit"] = _OME_UNITS[units[axis]]
    if "t" in axes:
        ome["TimeIncrement"] = scale[axes.index("t")]
    if "c" in axes:
        ome["Channel"] = {"Name": OutputLayout.from_record(meta["layout"]).channel_names()}
    ome["Plane"] = _plane_positions(axes, scale, shift, units, meta)
    return ome


def _plane_positions(
    axes: str,
    scale: list[float],
    shift: list[float],
    units: Mapping[str, str],
    meta: Mapping[str, Any],
) -> dict[str, list[Any]]:
    """PositionX/Y/Z of every plane (the centre of its first pixel), in page order."""
    lead = OutputLayout.from_record(meta["layout"]).shape[:-2]
    count = math.prod(lead)
    positions: dict[str, list[Any]] = {}
    for axis in "xyz":
        if axis not in axes:
            continue
        i = axes.index(axis)
        key = f"Position{axis.upper()}"
        if axis == "z":
            z = axes.index("z")
            positions[key] = [shift[i] + idx[z] * scale[i] for idx in np.ndindex(*lead)]
        else:
            positions[key] = [shift[i]] * count
        if units.get(axis) in _OME_UNITS:
            positions[key + "Unit"] = [_OME_UNITS[units[axis]]] * count
    return positions


def _is_tiff_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return path.is_file() and fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def _sync(path: Path) -> None:
    """fsync a file or folder, so that a rename after it cannot expose unwritten data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
