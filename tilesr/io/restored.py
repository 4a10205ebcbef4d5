"""Resumable writer for restored images: one OME-Zarr image with its uncertainty and provenance.

Layout of an output ``OUT.ome.zarr`` (see :mod:`tilesr.io.layout`)::

    OUT.ome.zarr/             one OME-NGFF image: multiscales at the root, levels "0", "1", ...
      0/ 1/ ...               the pyramid (2x mean in y/x per level), axes in NGFF order
      .tilesr/done/<index>    while writing only: one empty file per finished block

With an uncertainty (the per-pixel predicted error std, raw intensity units), the
channel axis ``c`` holds the restoration's channels first and the uncertainty's after
them, labelled in the ``omero`` metadata, so that a viewer opening ``OUT.ome.zarr`` shows
both; without one the output has the input's axes. The root attributes carry ``"tilesr":
{"status": "incomplete" | "complete", "fingerprint": {...}, "layout": {...},
...provenance}``. The NGFF ``multiscales`` attributes appear only once every block and the
pyramid are written, so an interrupted output never looks like a finished image. Each
block of the engine's output is one task that writes the image and the uncertainty of
that block and then its marker; ``resume`` recomputes only blocks without a marker. The
engine is deterministic per block (keyed noise), so a resumed output equals an
uninterrupted one bit for bit. :func:`open_restored` reads the two parts back.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from tilesr.errors import TilesrError
from tilesr.io import faults
from tilesr.io.axes import check_format, multiscales_attrs
from tilesr.io.layout import RESTORED, UNCERTAINTY, OutputLayout
from tilesr.io.ome_writer import (
    add_attributes,
    cast_to,
    check_sizes,
    create_level,
    pyramid_shapes,
    remove_store,
    store_chunks,
    write_pyramid,
)

_DONE_DIR = (".tilesr", "done")


class OutputState(Enum):
    """What to do with the output path."""

    NEW = "new"
    REPLACE = "replace"
    RESUME = "resume"
    COMPLETE = "complete"


@dataclass(frozen=True)
class WriteReport:
    """What :func:`write_restored` did (or found done).

    Attributes
    ----------
    path
        The output store.
    shape
        Shape of the output's level 0 (restoration and uncertainty channels).
    chunks_total
        Number of processing blocks in the image.
    chunks_written
        Blocks computed and written by this call.
    chunks_skipped
        Blocks already finished by an earlier, interrupted run.
    levels
        Number of pyramid levels.
    layout
        Axes and shape of the output and where its parts lie.
    """

    path: str
    shape: tuple[int, ...]
    chunks_total: int
    chunks_written: int
    chunks_skipped: int
    levels: int
    layout: OutputLayout


def output_state(
    path: str | os.PathLike[str],
    fingerprint: Mapping[str, Any],
    *,
    overwrite: bool = False,
    resume: bool = False,
) -> OutputState:
    """Decide what writing to ``path`` means, before any expensive computation.

    Parameters
    ----------
    path
        The output store.
    fingerprint
        What must match for a run to continue an earlier one (model hashes, options,
        input shape...). Only the keys given are compared here; :func:`write_restored`
        compares the full fingerprint (with what only the input's pixels tell, such as
        its intensity range) before it continues a resumed output.
    overwrite
        Replace an existing output (removed only when writing starts).
    resume
        Continue an interrupted output written with the same fingerprint.

    Returns
    -------
    OutputState
        ``NEW`` (nothing there), ``REPLACE``, ``RESUME`` or ``COMPLETE`` (nothing to do).

    Raises
    ------
    TilesrError
        If the output exists without ``overwrite``/``resume``, both flags are given, or a
        resumed output was started with a different fingerprint.
    """
    out = Path(path)
    if overwrite and resume:
        raise TilesrError("--overwrite and --resume exclude each other: choose one")
    if not out.exists():
        return OutputState.NEW
    if not resume:
        if overwrite:
            if not out.is_dir() or not _looks_like_zarr(out):
                raise TilesrError(f"{out} exists and is not a zarr store; refusing to delete it")
            return OutputState.REPLACE
        raise TilesrError(
            f"{out} exists; use --overwrite to replace it "
            "or --resume to continue an interrupted run"
        )
    stored = read_tilesr_attrs(out)
    check_fingerprint(out, stored, fingerprint)
    if stored.get("status") == "complete":
        # a run killed between its final metadata and the marker removal left them behind
        shutil.rmtree(out / _DONE_DIR[0], ignore_errors=True)
        return OutputState.COMPLETE
    return OutputState.RESUME


def write_restored(
    path: str | os.PathLike[str],
    image: da.Array,
    uncertainty: da.Array | None,
    *,
    state: OutputState,
    axes: str,
    fingerprint: Mapping[str, Any],
    pixel_sizes: Mapping[str, float] | None = None,
    units: Mapping[str, str] | None = None,
    translation: Mapping[str, float] | None = None,
    intensity: tuple[float, float] | None = None,
    dtype: np.dtype[Any] | str = "float32",
    zarr_format: int = 3,
    provenance: Mapping[str, Any] | None = None,
    on_skip: Callable[[list[tuple[int, ...]]], None] | None = None,
) -> WriteReport:
    """Write a restored image (and its uncertainty) block by block, resumably.

    Parameters
    ----------
    path
        Output OME-Zarr folder.
    image
        Restored image; its dask chunks are the engine's processing blocks.
    uncertainty
        Per-pixel standard deviation with the same shape and chunks, or None.
    state
        What :func:`output_state` decided for ``path``.
    axes
        Axes of ``image`` (letters from ``tczyx`` ending with ``yx``); the output stores
        them in NGFF order (:mod:`tilesr.io.layout`).
    fingerprint
        JSON-able settings a resumed run must match; a resumed output is checked
        against all of it before anything is written.
    pixel_sizes, units
        Physical pixel size and NGFF unit per axis of the restored image.
    translation
        Physical position of the centre of its first pixel per axis (default 0); every
        pyramid level is placed to match.
    intensity
        The raw intensity range of the restoration: the viewers' default contrast.
    dtype
        Output pixel type; integer types are rounded and clipped to their range (the
        uncertainty too, in the same array).
    zarr_format
        3 (NGFF 0.5, default) or 2 (NGFF 0.4).
    provenance
        Further JSON-able attributes stored under ``tilesr``.
    on_skip
        Called with the chunk indices of the blocks an earlier run finished, before
        computing the rest (e.g. to advance a progress bar).

    Returns
    -------
    WriteReport
        Blocks written and skipped.

    Raises
    ------
    TilesrError
        On a settings mismatch when resuming, an output that appeared since
        :func:`output_state` looked, or a failing block.
    """
    out = Path(path)
    check_format(zarr_format)
    if uncertainty is not None and (
        uncertainty.shape != image.shape or uncertainty.chunks != image.chunks
    ):
        raise TilesrError(
            f"uncertainty shape/chunks {uncertainty.shape} differ from the image's {image.shape}"
        )
    sizes = check_sizes(pixel_sizes, axes)
    if state is OutputState.COMPLETE:
        return finished_report(out)
    layout = OutputLayout(axes, tuple(int(n) for n in image.shape), uncertainty is not None)
    meta = {
        **dict(provenance or {}),
        "status": "incomplete",
        "fingerprint": _normalize(dict(fingerprint)),
        "layout": layout.record(),
    }
    storage = _Storage(layout, layout.chunks(store_chunks(image)), np.dtype(dtype), zarr_format)
    group, target = _open_target(out, state, storage, meta)
    done = out.joinpath(*_DONE_DIR)
    pending: list[tuple[int, ...]] = []
    finished: list[tuple[int, ...]] = []
    for idx in np.ndindex(*image.numblocks):
        (finished if (done / _marker(idx)).exists() else pending).append(idx)
    if on_skip is not None and finished:
        on_skip(finished)
    _write_blocks(image, uncertainty, target, pending, done, storage)
    faults.fault_point("blocks-done")
    ngff = partial(
        multiscales_attrs,
        layout.axes,
        pixel_sizes=sizes,
        units=units,
        translation=translation,
        zarr_format=zarr_format,
        omero=layout.omero(_windows(intensity, np.dtype(dtype))),
    )
    levels = _finish(group, out, layout, ngff, meta)
    total = len(pending) + len(finished)
    return WriteReport(str(out), layout.shape, total, len(pending), len(finished), levels, layout)


def finished_report(path: str | os.PathLike[str]) -> WriteReport:
    """What earlier runs wrote into a finished output, read back from its attributes."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    attrs = read_tilesr_attrs(Path(path))
    total = int(attrs.get("chunks_total", 0))
    levels = sum(1 for _ in group.array_keys())
    layout = _stored_layout(attrs, Path(path))
    return WriteReport(str(path), layout.shape, total, 0, total, levels, layout)


@dataclass(frozen=True)
class RestoredOutput:
    """A finished output of :func:`write_restored`, its two parts as lazy arrays.

    Attributes
    ----------
    image
        The restoration (the input's axes, in NGFF order).
    uncertainty
        Its per-pixel uncertainty, or None when the output holds none.
    axes
        Axes of both.
    layout
        Where they lie in the stored array.
    """

    image: da.Array
    uncertainty: da.Array | None
    axes: str
    layout: OutputLayout


def open_restored(path: str | os.PathLike[str], *, level: int = 0) -> RestoredOutput:
    """Read a finished tilesr output back: the restoration and its uncertainty apart.

    Parameters
    ----------
    path
        An output of ``tilesr restore`` (OME-Zarr).
    level
        Pyramid level (0: full resolution).

    Raises
    ------
    TilesrError
        If ``path`` is not a finished tilesr output or has no such level.
    """
    import zarr

    out = Path(path)
    attrs = read_tilesr_attrs(out, action="read")
    if attrs.get("status") != "complete":
        raise TilesrError(f"{out} is not finished (status {attrs.get('status')!r}); use --resume")
    layout = _stored_layout(attrs, out)
    group = zarr.open_group(str(out), mode="r")
    if str(level) not in group:
        raise TilesrError(f"{out} has no level {level}")
    array = da.from_zarr(group[str(level)])
    unc = layout.part_view(array, UNCERTAINTY)
    return RestoredOutput(layout.part_view(array, RESTORED), unc, layout.part_axes, layout)


def is_restored_output(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an output of :func:`write_restored` (finished or not)."""
    out = Path(path)
    if not out.is_dir() or not _looks_like_zarr(out):
        return False
    try:
        return "layout" in read_tilesr_attrs(out, action="read")
    except TilesrError:
        return False


@dataclass(frozen=True)
class _Storage:
    """How the output's level 0 is stored."""

    layout: OutputLayout
    chunks: tuple[int, ...]
    dtype: np.dtype[Any]
    zarr_format: int


def _windows(
    intensity: tuple[float, float] | None, dtype: np.dtype[Any]
) -> dict[str, tuple[float, float]]:
    """Default display windows: the intensity range, and a quarter of it for the std."""
    low, high = intensity if intensity is not None else (0.0, 1.0)
    if dtype.kind in "ui":  # as stored: rounded and clipped to the type
        info = np.iinfo(dtype)
        low, high = (float(np.clip(round(v), info.min, info.max)) for v in (low, high))
    return {RESTORED: (float(low), float(high)), UNCERTAINTY: (0.0, float(high - low) / 4)}


def _stored_layout(attrs: Mapping[str, Any], out: Path) -> OutputLayout:
    try:
        return OutputLayout.from_record(dict(attrs["layout"]))
    except (KeyError, TypeError, ValueError):
        raise TilesrError(
            f"{out} was written by another tilesr version (no output layout); restore it again"
        ) from None


def _open_target(
    out: Path, state: OutputState, storage: _Storage, meta: dict[str, Any]
) -> tuple[Any, Any]:
    """The output group and its level-0 array, ready for blocks.

    A resumed output is checked against the full fingerprint and the array this run
    would write; anything else is created afresh with its "incomplete" status.
    """
    import zarr

    if state is OutputState.RESUME and not out.joinpath(*_DONE_DIR).is_dir():
        # stopped before its array was created (the markers folder comes after it), so
        # no block was finished: nothing to keep, start afresh
        state = OutputState.REPLACE
    if state is OutputState.RESUME:
        check_fingerprint(out, read_tilesr_attrs(out), meta["fingerprint"])
        group = zarr.open_group(str(out), mode="r+")
        target = _existing_target(group, storage, out)
    else:
        if state is OutputState.REPLACE:
            remove_store(out)
        elif out.exists():
            raise TilesrError(f"{out} appeared while this run was starting; refusing to write")
        group = _create_group(out, storage, meta)
        target = group["0"]
    out.joinpath(*_DONE_DIR).mkdir(parents=True, exist_ok=True)
    faults.fault_point("levels")
    return group, target


def _create_group(out: Path, storage: _Storage, meta: dict[str, Any]) -> Any:
    """A new output group holding its empty level-0 array."""
    import zarr

    # created with its "incomplete" status in one atomic write of its metadata file:
    # a group without it would not be resumable
    group = zarr.open_group(
        str(out),
        mode="w",
        zarr_format=storage.zarr_format,  # type: ignore[arg-type]
        attributes={"tilesr": _normalize(meta)},
    )
    faults.fault_point("group")
    layout = storage.layout
    create_level(
        group, "0", shape=layout.shape, chunks=storage.chunks, dtype=storage.dtype, axes=layout.axes
    )
    return group


def _finish(
    group: Any,
    out: Path,
    layout: OutputLayout,
    ngff: Callable[..., dict[str, Any]],
    meta: dict[str, Any],
) -> int:
    """The pyramid from level 0, then the NGFF metadata and "complete" in one write; the levels.

    ``ngff(paths, name=, extra=)`` makes the multiscales attributes (``multiscales_attrs``
    with the output's axes, physical placement and channels). They appear only in this
    last write, so an interrupted output never looks like a finished image.
    """
    shapes = pyramid_shapes(layout.shape)
    paths = [str(i) for i in range(len(shapes))]
    write_pyramid(group, shapes, axes=layout.axes)
    faults.fault_point("pyramid")
    meta["status"] = "complete"
    add_attributes(group, ngff(paths, name=image_name(out), extra={"tilesr": _normalize(meta)}))
    faults.fault_point("metadata")
    # the markers only matter while incomplete; zarr warns about foreign folders
    shutil.rmtree(out / _DONE_DIR[0], ignore_errors=True)
    return len(shapes)


def image_name(out: Path) -> str:
    """The image's name: the output's file name without ``.zarr``/``.tif`` and ``.ome``."""
    name = out.name
    for suffix in (".zarr", ".tiff", ".tif", ".ome"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def _write_blocks(
    image: da.Array,
    uncertainty: da.Array | None,
    target: Any,
    pending: Sequence[tuple[int, ...]],
    done: Path,
    storage: _Storage,
) -> None:
    """One task per pending block: write image and uncertainty of the block, then its marker.

    The write tasks form one blockwise layer over ``image`` (and ``uncertainty``), so a
    block's image and uncertainty come from the engine's one shared task, and a single
    collection selects the pending blocks (one ``Delayed`` per block would merge the
    whole graph once per block: quadratic in the number of blocks).
    """
    if not pending:
        return
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    arrays = [image] if uncertainty is None else [image, uncertainty]
    token = dask.base.tokenize(*(a.name for a in arrays), str(done), str(storage))
    name = f"tilesr-write-{token}"
    written = da.map_blocks(
        _write_block,
        *arrays,
        target=target,
        layout=storage.layout,
        done=str(done),
        out_dtype=storage.dtype,
        name=name,
        chunks=tuple((1,) * len(c) for c in image.chunks),
        dtype=bool,
        meta=np.empty((0,) * image.ndim, dtype=bool),
    )
    final = f"tilesr-written-{token}"
    layer: dict[Any, Any] = {final: (_count_done, [(name, *idx) for idx in pending])}
    graph = HighLevelGraph.from_collections(final, layer, dependencies=[written])
    dask.compute(Delayed(final, graph))


def _count_done(flags: list[Any]) -> int:
    return len(flags)


def _write_block(
    block: np.ndarray[Any, Any],
    unc: np.ndarray[Any, Any] | None = None,
    *,
    target: Any,
    layout: OutputLayout,
    done: str,
    out_dtype: np.dtype[Any],
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """Write one block of the image (and uncertainty), then its marker; return a 1-element flag."""
    assert block_info is not None  # always passed by map_blocks
    region = tuple(slice(a, b) for a, b in block_info[0]["array-location"])
    target[layout.region(region, RESTORED)] = layout.place(cast_to(block, out_dtype))
    if unc is not None:
        std = cast_to(np.asarray(unc, dtype=np.float32), out_dtype)
        target[layout.region(region, UNCERTAINTY)] = layout.place(std)
    faults.fault_point("block")
    # only now is the block finished: an interrupted write leaves no marker
    Path(done, _marker(tuple(block_info[None]["chunk-location"]))).touch()
    return np.ones((1,) * block.ndim, dtype=bool)


def _existing_target(group: Any, storage: _Storage, out: Path) -> Any:
    """The array of an interrupted output, checked against what this run would write."""
    try:
        target = group["0"]
    except KeyError:
        raise TilesrError(f"cannot resume {out}: array '0' is missing; use --overwrite") from None
    shape, chunks, dtype = storage.layout.shape, storage.chunks, storage.dtype
    if tuple(target.shape) != shape or tuple(target.chunks) != chunks or target.dtype != dtype:
        raise TilesrError(
            f"cannot resume {out}: stored array {target.shape} {target.dtype} chunks "
            f"{target.chunks} does not match this run ({shape} {dtype} chunks {chunks}); "
            "use --overwrite"
        )
    return target


def read_tilesr_attrs(out: Path, *, action: str = "resume") -> dict[str, Any]:
    import zarr

    try:
        group = zarr.open_group(str(out), mode="r")
        attrs = group.attrs.get("tilesr")
    except Exception:  # not a zarr group at all
        attrs = None
    if not isinstance(attrs, dict):
        advice = "; use --overwrite to replace it" if action == "resume" else ""
        raise TilesrError(f"cannot {action} {out}: it is not a tilesr output{advice}")
    return attrs


def check_fingerprint(out: Path, stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """Refuse to continue an output started with other settings, naming the first that differs."""
    have = stored.get("fingerprint", {})
    for key, value in _normalize(dict(wanted)).items():
        if have.get(key) != value:
            raise TilesrError(
                f"cannot resume {out}: it was started with {key} = {_short(have.get(key))}, "
                f"this run has {_short(value)}; use --overwrite to start again"
            )


def _looks_like_zarr(out: Path) -> bool:
    return any((out / m).exists() for m in ("zarr.json", ".zgroup", ".zarray", ".zattrs"))


def _marker(idx: tuple[int, ...]) -> str:
    return "_".join(str(i) for i in idx)


def _normalize(value: Any) -> Any:
    """JSON round trip: tuples become lists, numpy scalars plain numbers, as stored in attrs."""
    return json.loads(json.dumps(value, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
