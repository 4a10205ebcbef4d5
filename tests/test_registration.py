"""The output lies where the input lies, in physical coordinates (read by ome-zarr-py).

A single bright spot in the input and its restored centre of mass must agree in
micrometres on every pyramid level: the input's translation (its stage position) is
carried over, plus the half-pixel shift of super-resolution (the bicubic upsampling is
``align_corners=False``: output pixel 0 is centred at input pixel ``0.5 / s - 0.5``)
and the shift of each 2x mean of the pyramid.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.io import parse_url
from ome_zarr.reader import Multiscales, Reader
from ome_zarr.writer import write_multiscales_metadata
from ome_zarr_models.v04 import Image as ImageV04
from ome_zarr_models.v05 import Image as ImageV05

from tests.onnx_models import analytic_model
from tests.onnx_models import test_metadata as small_metadata
from tilesr.io import open_image
from tilesr.options import RestoreOptions
from tilesr.restore_file import restore_file

SPOT = (61, 83)  # input pixel of the spot's centre (far from tile and block edges)
SIZES = (0.5, 0.4)  # input pixel size in y and x (micrometres): unequal, to catch swaps
ORIGIN = (10.0, -3.0)  # input translation in y and x (micrometres)


#: the analytic model with std 0 restores x0 = its conditioning, the bicubic 2x upsampling
#: of the input: a spot stays exactly symmetric, whatever the tiles
OPTIONS = RestoreOptions(steps=2, sampler="ddim", samples=1, block_size=96)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("registration") / "identity2.onnx"
    return analytic_model(path, std=0.0, metadata=small_metadata(scale=2))


def _spot(shape: tuple[int, int]) -> np.ndarray:
    """A symmetric Gaussian spot (sigma 1.5 px) centred on pixel SPOT, on a flat background."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r2 = (yy - SPOT[0]) ** 2 + (xx - SPOT[1]) ** 2
    return (100 + 3000 * np.exp(-r2 / (2 * 1.5**2))).astype(np.float32)


def _array_options(fmt) -> dict:
    """How ome-zarr-py's own writer stores the arrays of an NGFF version."""
    if isinstance(fmt, FormatV05):
        return {"dimension_names": ["y", "x"]}
    return {"chunk_key_encoding": {"name": "v2", "separator": "/"}}


def _levels(path):
    """(pixels, scale, translation) of every level of the image at ``path``, by ome-zarr-py."""
    location = parse_url(str(path))
    (node,) = [n for n in Reader(location)() if any(isinstance(s, Multiscales) for s in n.specs)]
    out = []
    for data, transforms in zip(node.data, node.metadata["coordinateTransformations"], strict=True):
        by_type = {t["type"]: t[t["type"]] for t in transforms}
        shift = by_type.get("translation", [0.0] * len(by_type["scale"]))
        out.append((np.asarray(data), np.asarray(by_type["scale"]), np.asarray(shift)))
    return out


def _centre_of_mass(pixels: np.ndarray, scale, translation) -> np.ndarray:
    """Centre of mass of the spot above the background, in physical units (y, x)."""
    peak = np.unravel_index(np.argmax(pixels), pixels.shape)
    half = 12 * pixels.shape[0] // 140 + 4  # about 8 input pixels around the peak
    window = tuple(slice(p - half, p + half + 1) for p in peak)
    mass = pixels[window].astype(np.float64) - np.median(pixels)
    grid = np.mgrid[window]
    index = np.array([(g * mass).sum() / mass.sum() for g in grid])
    return index * scale[-2:] + translation[-2:]


@pytest.mark.parametrize(("version", "zarr_format"), [("0.4", 2), ("0.5", 3)])
def test_a_restored_spot_stays_where_the_input_had_it(tmp_path, model, version, zarr_format):
    src = tmp_path / "in.ome.zarr"
    fmt = FormatV04() if version == "0.4" else FormatV05()
    transforms = [
        {"type": "scale", "scale": list(SIZES)},
        {"type": "translation", "translation": list(ORIGIN)},
    ]
    group = zarr.open_group(str(src), mode="w", zarr_format=zarr_format)
    group.create_array("0", data=_spot((140, 150)), chunks=(64, 64), **_array_options(fmt))
    datasets = [{"path": "0", "coordinateTransformations": transforms}]
    write_multiscales_metadata(group, datasets, fmt=fmt, axes=["y", "x"])
    ((lr, lr_scale, lr_shift),) = _levels(src)
    expected = np.array(SPOT) * SIZES + ORIGIN
    np.testing.assert_allclose(_centre_of_mass(lr, lr_scale, lr_shift), expected, atol=1e-6)

    out = tmp_path / "out.ome.zarr"
    options = replace(OPTIONS, zarr_format=zarr_format)
    restore_file(src, out, options, model=model, progress=False)
    validator = ImageV04 if zarr_format == 2 else ImageV05
    validator.from_zarr(zarr.open_group(str(out), mode="r"))  # translations as NGFF wants them
    levels = _levels(out)
    assert len(levels) == 2  # 280 x 300: a second, 2x mean level
    for pixels, scale, shift in levels:
        found = _centre_of_mass(pixels, scale, shift)
        # a thousandth of an input pixel; without the SR shift it is off by a quarter
        np.testing.assert_allclose(found, expected, atol=0.001 * min(SIZES))


def test_an_ome_tiff_stage_position_reaches_the_output(tmp_path, model):
    src = tmp_path / "in.ome.tif"
    metadata = {
        "axes": "YX",
        "PhysicalSizeY": SIZES[0],
        "PhysicalSizeX": SIZES[1],
        "Plane": {
            "PositionY": [ORIGIN[0]],
            "PositionX": [ORIGIN[1] / 1000],
            "PositionXUnit": ["mm"],
        },
    }
    tifffile.imwrite(src, _spot((140, 150)), ome=True, metadata=metadata)
    image = open_image(src)
    assert image.translation == pytest.approx({"y": ORIGIN[0], "x": ORIGIN[1]})
    out = tmp_path / "out.ome.zarr"
    restore_file(src, out, OPTIONS, model=model, progress=False)
    expected = np.array(SPOT) * SIZES + ORIGIN
    for pixels, scale, shift in _levels(out):
        found = _centre_of_mass(pixels, scale, shift)
        np.testing.assert_allclose(found, expected, atol=0.001 * min(SIZES))
