"""Axis names, physical units and OME-NGFF ``multiscales`` metadata (0.4 and 0.5).

tilesr names axes with lowercase letters from ``tczyx`` in NGFF order (time, channel,
space) and always ends with ``yx``: the engine restores the last two axes and walks the
leading ones plane by plane.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tilesr.errors import TilesrError

AXIS_LETTERS = "tczyx"
#: zarr format -> the OME-NGFF version written with it
NGFF_VERSIONS = {2: "0.4", 3: "0.5"}
ZARR_FORMATS = tuple(NGFF_VERSIONS)
AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}

# OME-XML / ImageJ spellings -> NGFF unit names (NGFF accepts only UDUNITS-2 names)
_UNIT_ALIASES = {
    "micrometer": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "\\u00b5m": "micrometer",
    "nanometer": "nanometer",
    "nm": "nanometer",
    "millimeter": "millimeter",
    "mm": "millimeter",
    "centimeter": "centimeter",
    "cm": "centimeter",
    "meter": "meter",
    "m": "meter",
    "angstrom": "angstrom",
    "å": "angstrom",
    "picometer": "picometer",
    "pm": "picometer",
    "second": "second",
    "s": "second",
    "sec": "second",
    "millisecond": "millisecond",
    "ms": "millisecond",
    "microsecond": "microsecond",
    "us": "microsecond",
    "µs": "microsecond",
    "nanosecond": "nanosecond",
    "ns": "nanosecond",
    "minute": "minute",
    "min": "minute",
    "hour": "hour",
    "h": "hour",
}


#: metres per NGFF length unit (to carry a stage position into the pixel sizes' unit)
LENGTH_METRES = {
    "angstrom": 1e-10,
    "picometer": 1e-12,
    "nanometer": 1e-9,
    "micrometer": 1e-6,
    "millimeter": 1e-3,
    "centimeter": 1e-2,
    "meter": 1.0,
}


def convert_length(value: float, unit: str, to: str) -> float | None:
    """``value`` in ``unit`` expressed in ``to`` (NGFF names), None unless both are lengths."""
    if unit not in LENGTH_METRES or to not in LENGTH_METRES:
        return None
    return value * LENGTH_METRES[unit] / LENGTH_METRES[to]


def check_axes(axes: str, shape: tuple[int, ...], *, source: str = "image") -> str:
    """Validate an axes string against an array shape and return it.

    Parameters
    ----------
    axes
        Lowercase letters from ``tczyx``, unique, in any order that ends with ``yx``.
    shape
        Shape of the array the axes describe; its length must equal ``len(axes)``.
    source
        What the axes belong to, for the error message.

    Returns
    -------
    str
        ``axes`` unchanged.

    Raises
    ------
    TilesrError
        If any rule above is broken; the message names the offending value.
    """
    if not isinstance(axes, str) or not axes:
        raise TilesrError(f"{source}: axes must be a non-empty string such as 'zyx', got {axes!r}")
    bad = sorted(set(axes) - set(AXIS_LETTERS))
    if bad:
        raise TilesrError(
            f"{source}: axes {axes!r} contain {''.join(bad)!r}; use lowercase letters from 'tczyx'"
        )
    if len(set(axes)) != len(axes):
        raise TilesrError(f"{source}: axes {axes!r} repeat a letter")
    if not axes.endswith("yx"):
        raise TilesrError(f"{source}: axes {axes!r} must end with 'yx'")
    if len(axes) != len(shape):
        raise TilesrError(
            f"{source}: axes {axes!r} name {len(axes)} dimensions but the array has "
            f"{len(shape)} (shape {tuple(shape)})"
        )
    return axes


def check_format(zarr_format: object) -> int:
    """A zarr format tilesr writes (2: OME-NGFF 0.4, 3: OME-NGFF 0.5), or TilesrError."""
    if zarr_format not in NGFF_VERSIONS or isinstance(zarr_format, bool):
        raise TilesrError(
            f"zarr format must be 2 (OME-NGFF 0.4) or 3 (OME-NGFF 0.5), got {zarr_format!r}"
        )
    return int(zarr_format)


def normalize_unit(unit: object) -> str | None:
    """NGFF name of a unit spelled the OME-XML or ImageJ way, or None when unknown."""
    if not isinstance(unit, str):
        return None
    key = unit.strip().lower()
    return _UNIT_ALIASES.get(key) or _UNIT_ALIASES.get(unit.strip())


def check_pixel_size(value: object, axis: str, *, source: str) -> float:
    """A physical pixel size as a positive finite float, or TilesrError naming it."""
    try:
        size = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TilesrError(
            f"{source}: pixel size of axis {axis!r} is not a number: {value!r}"
        ) from None
    if not math.isfinite(size) or size <= 0:
        raise TilesrError(
            f"{source}: pixel size of axis {axis!r} must be positive and finite, got {value!r}"
        )
    return size


def ngff_axes(axes: str, units: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """NGFF ``axes`` entries (name, type, unit for space and time axes)."""
    units = units or {}
    out = []
    for name in axes:
        entry = {"name": name, "type": AXIS_TYPES[name]}
        unit = units.get(name)
        if unit and name != "c":
            entry["unit"] = unit
        out.append(entry)
    return out


def multiscales_attrs(
    axes: str,
    paths: list[str],
    *,
    pixel_sizes: Mapping[str, float] | None = None,
    units: Mapping[str, str] | None = None,
    translation: Mapping[str, float] | None = None,
    factor: int = 2,
    zarr_format: int = 3,
    name: str = "image",
    omero: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Group attributes declaring ``paths`` as a pyramid downsampled ``factor``x per level in y/x.

    Parameters
    ----------
    axes
        tilesr axes string of every level.
    paths
        Array paths of the levels, finest first.
    pixel_sizes, units
        Physical pixel size and unit per axis of level 0; missing axes get 1.0 and no unit.
    translation
        Physical position of the centre of level 0's first pixel per axis (default 0).
    factor
        Downsampling factor between consecutive levels along y and x.
    zarr_format
        3 writes NGFF 0.5 (attributes under ``ome``), 2 writes NGFF 0.4.
    name
        Name of the multiscale image.
    omero
        NGFF ``omero`` display metadata (channel labels, colours, windows), or None.
    extra
        Further attributes merged into the result (e.g. provenance).

    Returns
    -------
    dict
        Attributes for the group holding the levels.
    """
    sizes, origin = dict(pixel_sizes or {}), dict(translation or {})
    datasets = []
    for level, path in enumerate(paths):
        scale, shift = [], []
        for ax in axes:
            base = 1.0 if ax == "c" else float(sizes.get(ax, 1.0))
            f = factor**level if ax in "yx" else 1
            scale.append(base * f)
            # a 2x mean puts the coarse pixel centre half a fine pixel further in
            start = 0.0 if ax == "c" else float(origin.get(ax, 0.0))
            shift.append(start + base * (f - 1) / 2.0)
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
        if any(shift):
            transforms.append({"type": "translation", "translation": shift})
        datasets.append({"path": path, "coordinateTransformations": transforms})
    multiscale: dict[str, Any] = {
        "axes": ngff_axes(axes, units),
        "datasets": datasets,
        "name": name,
    }
    multiscale["type"] = "mean"
    attrs: dict[str, Any]
    version = NGFF_VERSIONS[check_format(zarr_format)]
    display = {"omero": dict(omero)} if omero else {}
    if zarr_format == 3:
        attrs = {"ome": {"version": version, "multiscales": [multiscale], **display}}
    else:
        attrs = {"multiscales": [{"version": version, **multiscale}], **display}
    if extra:
        attrs.update(extra)
    return attrs


def parse_multiscales(attrs: Mapping[str, Any], *, source: str) -> dict[str, Any] | None:
    """The first ``multiscales`` entry of NGFF 0.5 or 0.4 group attributes, or None if absent."""
    ome = attrs.get("ome")
    raw = ome.get("multiscales") if isinstance(ome, Mapping) else attrs.get("multiscales")
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], Mapping):
        raise TilesrError(f"{source}: 'multiscales' metadata must be a non-empty list of objects")
    return dict(raw[0])


def multiscale_axes(
    multiscale: Mapping[str, Any], *, source: str
) -> tuple[list[str], dict[str, str]]:
    """Axis names and units of a multiscales entry (0.4/0.5 objects or 0.3 plain names)."""
    raw = multiscale.get("axes")
    if not isinstance(raw, list) or not raw:
        raise TilesrError(f"{source}: multiscales metadata has no 'axes' list")
    names, units = [], {}
    for entry in raw:
        if isinstance(entry, str):
            name = entry
        elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            name = entry["name"]
            unit = normalize_unit(entry.get("unit"))
            if unit:
                units[name.lower()] = unit
        else:
            raise TilesrError(f"{source}: malformed axis entry {entry!r} in multiscales metadata")
        names.append(name.lower())
    return names, units


def dataset_transform(
    multiscale: Mapping[str, Any], level: int, names: list[str], *, source: str
) -> tuple[list[float], list[float]]:
    """Physical pixel size and translation per axis of dataset ``level``.

    The dataset's transformations apply first, then the multiscale's own, each list in
    its order: a pixel index ``i`` lies at ``i * scale + translation``.
    """
    ndim = len(names)
    scale, shift = [1.0] * ndim, [0.0] * ndim
    per_level = multiscale["datasets"][level].get("coordinateTransformations")
    for transforms in (per_level, multiscale.get("coordinateTransformations")):
        if transforms is None:
            continue
        if not isinstance(transforms, list):
            raise TilesrError(
                f"{source}: coordinateTransformations must be a list, got {transforms!r}"
            )
        for tr in transforms:
            kind = tr.get("type") if isinstance(tr, Mapping) else None
            if kind not in ("scale", "translation"):
                continue
            values = tr.get(kind)
            if not isinstance(values, list) or len(values) != ndim:
                raise TilesrError(
                    f"{source}: {kind} {values!r} of level {level} does not have one entry "
                    f"per axis {names}"
                )
            scale, shift = _compose(kind, values, names, scale, shift, source=source)
    return scale, shift


def _compose(
    kind: str,
    values: list[Any],
    names: list[str],
    scale: list[float],
    shift: list[float],
    *,
    source: str,
) -> tuple[list[float], list[float]]:
    """``(scale, shift)`` followed by one NGFF scale or translation."""
    if kind == "scale":
        factors = [
            check_pixel_size(v, n, source=source) for v, n in zip(values, names, strict=True)
        ]
        return (
            [s * f for s, f in zip(scale, factors, strict=True)],
            [t * f for t, f in zip(shift, factors, strict=True)],
        )
    offsets = [_check_offset(v, n, source=source) for v, n in zip(values, names, strict=True)]
    return scale, [t + o for t, o in zip(shift, offsets, strict=True)]


def _check_offset(value: object, axis: str, *, source: str) -> float:
    """A translation as a finite float, or TilesrError naming it."""
    try:
        offset = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        offset = math.nan
    if not math.isfinite(offset) or isinstance(value, bool):
        raise TilesrError(
            f"{source}: translation of axis {axis!r} must be a finite number, got {value!r}"
        )
    return offset
