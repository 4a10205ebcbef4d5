"""Resumable writer for restored images: OME-Zarr with an uncertainty image and provenance.

Layout of an output ``OUT.zarr``::

    OUT.zarr/                 group; attributes: OME-NGFF multiscales (levels "0", "1", ...)
      0/ 1/ ...               the restored image pyramid (2x mean in y/x per level)
      uncertainty/            optional group, its own multiscales image: per-pixel std
        0/ 1/ ...             over the samples (float32, raw intensity units)
      .tilesr/done/<index>    while writing only: one empty file per finished block

The root attributes carry ``"tilesr": {"status": "incomplete" | "complete", "fingerprint":
{...}, ...provenance}``. The NGFF ``multiscales`` attributes appear only once every block and
the pyramid are written, so an interrupted output never looks like a finished image.
Each block of the engine's output is one task that writes the image and the uncertainty
of that block and then its marker; ``resume`` recomputes only blocks without a marker.
The engine is deterministic per block (keyed noise), so a resumed output equals an
uninterrupted one bit for bit.
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
from tilesr.io.ome_writer import (
    cast_to,
    check_sizes,
    create_level,
    pyramid_shapes,
    remove_store,
    store_chunks,
    write_pyramid,
)

UNCERTAINTY = "uncertainty"
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
        Shape of the restored image (level 0).
    chunks_total
        Number of processing blocks in the image.
    chunks_written
        Blocks computed and written by this call.
    chunks_skipped
        Blocks already finished by an earlier, interrupted run.
    levels
        Number of pyramid levels.
    """

    path: str
    shape: tuple[int, ...]
    chunks_total: int
    chunks_written: int
    chunks_skipped: int
    levels: int


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
    stored = _read_tilesr_attrs(out)
    _check_fingerprint(out, stored, fingerprint)
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
        Axes of ``image`` (letters from ``tczyx`` ending with ``yx``).
    fingerprint
        JSON-able settings a resumed run must match; a resumed output is checked
        against all of it before anything is written.
    pixel_sizes, units
        Physical pixel size and NGFF unit per axis of the restored image.
    translation
        Physical position of the centre of its first pixel per axis (default 0); every
        pyramid level of the image and the uncertainty is placed to match.
    dtype
        Output pixel type of the image; integer types are rounded and clipped to their
        range. The uncertainty is always float32.
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
    meta = {
        **dict(provenance or {}),
        "status": "incomplete",
        "fingerprint": _normalize(dict(fingerprint)),
        "layout": {"image": ".", UNCERTAINTY: UNCERTAINTY if uncertainty is not None else None},
    }
    layout = _Layout(axes, store_chunks(image), np.dtype(dtype), zarr_format)
    group, targets = _open_targets(out, state, image, uncertainty, layout, meta)
    done = out.joinpath(*_DONE_DIR)
    pending: list[tuple[int, ...]] = []
    finished: list[tuple[int, ...]] = []
    for idx in np.ndindex(*image.numblocks):
        (finished if (done / _marker(idx)).exists() else pending).append(idx)
    if on_skip is not None and finished:
        on_skip(finished)
    _write_blocks(image, uncertainty, targets, pending, done, np.dtype(dtype))
    faults.fault_point("blocks-done")
    ngff = partial(
        multiscales_attrs,
        axes,
        pixel_sizes=sizes,
        units=units,
        translation=translation,
        zarr_format=zarr_format,
    )
    levels = _finish(group, out, tuple(image.shape), axes, ngff, meta)
    total = len(pending) + len(finished)
    shape = tuple(int(n) for n in image.shape)
    return WriteReport(str(out), shape, total, len(pending), len(finished), levels)


def finished_report(path: str | os.PathLike[str]) -> WriteReport:
    """What earlier runs wrote into a finished output, read back from its attributes."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    total = int(_read_tilesr_attrs(Path(path)).get("chunks_total", 0))
    levels = sum(1 for _ in group.array_keys())
    shape = tuple(int(n) for n in group["0"].shape)  # type: ignore[union-attr]
    return WriteReport(str(path), shape, total, 0, total, levels)


@dataclass(frozen=True)
class _Layout:
    """How the level-0 arrays are stored."""

    axes: str
    chunks: tuple[int, ...]
    dtype: np.dtype[Any]
    zarr_format: int


def _open_targets(
    out: Path,
    state: OutputState,
    image: da.Array,
    uncertainty: da.Array | None,
    layout: _Layout,
    meta: dict[str, Any],
) -> tuple[Any, tuple[Any, Any]]:
    """The output group and its level-0 arrays (image, uncertainty or None), ready for blocks.

    A resumed output is checked against the full fingerprint and the arrays this run
    would write; anything else is created afresh with its "incomplete" status.
    """
    import zarr

    if state is OutputState.RESUME and not out.joinpath(*_DONE_DIR).is_dir():
        # stopped before its arrays were all created (the markers folder comes after
        # them), so no block was finished: nothing to keep, start afresh
        state = OutputState.REPLACE
    if state is OutputState.RESUME:
        _check_fingerprint(out, _read_tilesr_attrs(out), meta["fingerprint"])
        group = zarr.open_group(str(out), mode="r+")
        targets = _existing_targets(group, image, uncertainty, layout, out)
    else:
        if state is OutputState.REPLACE:
            remove_store(out)
        elif out.exists():
            raise TilesrError(f"{out} appeared while this run was starting; refusing to write")
        group = _create_group(out, image, uncertainty, layout, meta)
        targets = (group["0"], group[UNCERTAINTY]["0"] if uncertainty is not None else None)
    out.joinpath(*_DONE_DIR).mkdir(parents=True, exist_ok=True)
    faults.fault_point("levels")
    return group, targets


def _create_group(
    out: Path, image: da.Array, uncertainty: da.Array | None, layout: _Layout, meta: dict[str, Any]
) -> Any:
    """A new output group holding its empty level-0 arrays."""
    import zarr

    # created with its "incomplete" status in one atomic write of its metadata file:
    # a group without it would not be resumable
    group = zarr.open_group(
        str(out),
        mode="w",
        zarr_format=layout.zarr_format,  # type: ignore[arg-type]
        attributes={"tilesr": _normalize(meta)},
    )
    faults.fault_point("group")
    shape, chunks, axes = image.shape, layout.chunks, layout.axes
    create_level(group, "0", shape=shape, chunks=chunks, dtype=layout.dtype, axes=axes)
    if uncertainty is not None:
        unc = group.create_group(UNCERTAINTY)
        create_level(unc, "0", shape=shape, chunks=chunks, dtype=np.float32, axes=axes)
    return group


def _finish(
    group: Any,
    out: Path,
    shape: tuple[int, ...],
    axes: str,
    ngff: Callable[..., dict[str, Any]],
    meta: dict[str, Any],
) -> int:
    """Pyramids from level 0, then the NGFF metadata and "complete" in one write; the levels.

    ``ngff(paths, name=, extra=)`` makes the multiscales attributes (``multiscales_attrs``
    with the image's axes and physical placement). They appear only in this last write,
    so an interrupted output never looks like a finished image.
    """
    shapes = pyramid_shapes(shape)
    paths = [str(i) for i in range(len(shapes))]
    write_pyramid(group, shapes, axes=axes)
    if meta["layout"][UNCERTAINTY] is not None:
        faults.fault_point("pyramid")
        unc_group = group[UNCERTAINTY]
        write_pyramid(unc_group, shapes, axes=axes)
        unc_group.attrs.update(ngff(paths, name=UNCERTAINTY))
    meta["status"] = "complete"
    group.attrs.update(ngff(paths, name=out.stem, extra={"tilesr": _normalize(meta)}))
    faults.fault_point("metadata")
    # the markers only matter while incomplete; zarr warns about foreign folders
    shutil.rmtree(out / _DONE_DIR[0], ignore_errors=True)
    return len(shapes)


def _write_blocks(
    image: da.Array,
    uncertainty: da.Array | None,
    targets: tuple[Any, Any],
    pending: Sequence[tuple[int, ...]],
    done: Path,
    dtype: np.dtype[Any],
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
    token = dask.base.tokenize(*(a.name for a in arrays), str(done), str(dtype))
    name = f"tilesr-write-{token}"
    written = da.map_blocks(
        _write_block,
        *arrays,
        target=targets[0],
        unc_target=targets[1],
        done=str(done),
        out_dtype=dtype,
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
    unc_target: Any,
    done: str,
    out_dtype: np.dtype[Any],
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """Write one block of the image (and uncertainty), then its marker; return a 1-element flag."""
    assert block_info is not None  # always passed by map_blocks
    region = tuple(slice(a, b) for a, b in block_info[0]["array-location"])
    target[region] = cast_to(block, out_dtype)
    if unc_target is not None and unc is not None:
        unc_target[region] = np.asarray(unc, dtype=np.float32)
    faults.fault_point("block")
    # only now is the block finished: an interrupted write leaves no marker
    Path(done, _marker(tuple(block_info[None]["chunk-location"]))).touch()
    return np.ones((1,) * block.ndim, dtype=bool)


def _existing_targets(
    group: Any, image: da.Array, uncertainty: da.Array | None, layout: _Layout, out: Path
) -> tuple[Any, Any]:
    """The arrays of an interrupted output, checked against what this run would write."""
    try:
        target = group["0"]
        unc_target = group[UNCERTAINTY]["0"] if uncertainty is not None else None
    except KeyError as exc:
        raise TilesrError(f"cannot resume {out}: array {exc} is missing; use --overwrite") from None
    chunks = layout.chunks
    for arr, want in ((target, layout.dtype), (unc_target, np.dtype(np.float32))):
        if arr is None:
            continue
        if (
            tuple(arr.shape) != tuple(image.shape)
            or tuple(arr.chunks) != chunks
            or arr.dtype != want
        ):
            raise TilesrError(
                f"cannot resume {out}: stored array {arr.shape} {arr.dtype} chunks {arr.chunks} "
                f"does not match this run ({image.shape} {want} chunks {chunks}); use --overwrite"
            )
    return target, unc_target


def _read_tilesr_attrs(out: Path) -> dict[str, Any]:
    import zarr

    try:
        group = zarr.open_group(str(out), mode="r")
        attrs = group.attrs.get("tilesr")
    except Exception:  # not a zarr group at all
        attrs = None
    if not isinstance(attrs, dict):
        raise TilesrError(
            f"cannot resume {out}: it is not a tilesr output; use --overwrite to replace it"
        )
    return attrs


def _check_fingerprint(out: Path, stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
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
