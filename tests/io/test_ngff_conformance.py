"""Second opinions on the NGFF tilesr writes by hand: ome-zarr-models validates every output
layout, ome-zarr-py (the reader under napari-ome-zarr and ``ome_zarr info``) reads them.

tilesr does not depend on either (ome-zarr's writer cannot declare the image and mark it
complete in one atomic attribute write, which the resumable writer needs); the test extra
installs both, so that both NGFF versions are checked by the community's implementations.
"""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import OMERO, Multiscales, Reader
from ome_zarr.utils import info
from ome_zarr_models.v04 import Image as ImageV04
from ome_zarr_models.v05 import Image as ImageV05

from tilesr.io import open_restored, write_ome_zarr, write_restored
from tilesr.io.restored import OutputState

VALIDATORS = {2: ImageV04, 3: ImageV05}
FORMATS = [(2, "0.4"), (3, "0.5")]


def _read(path):
    """ome-zarr-py's reading of ``path``: the NGFF version and the one image node it finds."""
    location = parse_url(str(path))
    assert location is not None, path
    nodes = [n for n in Reader(location)() if any(isinstance(s, Multiscales) for s in n.specs)]
    assert len(nodes) == 1, nodes
    return location.version, nodes[0]


def _validate(path, zarr_format):
    """ome-zarr-models' validation of the image at ``path`` (raises when it does not conform)."""
    return VALIDATORS[zarr_format].from_zarr(zarr.open_group(str(path), mode="r"))


def _restored(path, shape, axes, *, zarr_format, uncertainty=True, dtype="float32"):
    rng = da.random.default_rng(1)
    chunks = (1,) * (len(shape) - 2) + (128, 128)
    image = rng.uniform(0, 100, shape, chunks=chunks).astype(np.float32)
    write_restored(
        path,
        image,
        image * 0.1 if uncertainty else None,
        axes=axes,
        zarr_format=zarr_format,
        fingerprint={"k": 1},
        state=OutputState.NEW,
        intensity=(0.0, 100.0),
        dtype=dtype,
    )
    return image.compute()


@pytest.mark.parametrize(("zarr_format", "version"), FORMATS)
def test_write_ome_zarr_conforms_and_reads_back(tmp_path, zarr_format, version):
    image = np.random.default_rng(0).uniform(0, 100, (3, 600, 520)).astype(np.float32)
    out = tmp_path / "img.ome.zarr"
    sizes = {"z": 2.0, "y": 0.1, "x": 0.1}
    units = {"y": "micrometer", "x": "micrometer"}
    write_ome_zarr(out, image, axes="zyx", pixel_sizes=sizes, units=units, zarr_format=zarr_format)
    _validate(out, zarr_format)
    found, node = _read(out)
    assert found == version
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert [d.shape for d in node.data] == [(3, 600, 520), (3, 300, 260), (3, 150, 130)]
    np.testing.assert_array_equal(np.asarray(node.data[0]), image)
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[2.0, 0.1, 0.1], [2.0, 0.2, 0.2], [2.0, 0.4, 0.4]]


#: every layout of a restored output: with and without an uncertainty, an input with and
#: without a channel axis (and one whose channel axis comes after z, as ImageJ orders it)
LAYOUTS = [
    ((500, 540), "yx", True),
    ((500, 540), "yx", False),
    ((2, 300, 280), "zyx", True),
    ((2, 300, 280), "cyx", True),
    ((3, 2, 300, 280), "zcyx", True),
    ((1, 2, 300, 280), "czyx", False),
]


@pytest.mark.parametrize(("zarr_format", "version"), FORMATS)
@pytest.mark.parametrize(("shape", "axes", "uncertainty"), LAYOUTS)
def test_every_restored_layout_conforms(tmp_path, zarr_format, version, shape, axes, uncertainty):
    out = tmp_path / "restored.ome.zarr"
    image = _restored(out, shape, axes, zarr_format=zarr_format, uncertainty=uncertainty)
    model = _validate(out, zarr_format)
    names = [a.name for a in model.ome_attributes.multiscales[0].axes]
    assert names == [a for a in "tczyx" if a in axes or (a == "c" and uncertainty)]
    found, node = _read(out)
    assert found == version
    assert node.data[0].shape == zarr.open_array(str(out / "0"), mode="r").shape
    back = open_restored(out)
    expected = np.moveaxis(image, [axes.index(a) for a in back.axes], range(len(axes)))
    np.testing.assert_array_equal(np.asarray(back.image), expected)
    if uncertainty:
        np.testing.assert_allclose(np.asarray(back.uncertainty), expected * 0.1, rtol=1e-6)
    else:
        assert back.uncertainty is None


@pytest.mark.parametrize(("zarr_format", "version"), FORMATS)
def test_the_uncertainty_is_found_without_naming_a_sub_path(tmp_path, zarr_format, version, capsys):
    """What napari-ome-zarr and ``ome_zarr info`` see when given the output folder."""
    out = tmp_path / "restored.ome.zarr"
    image = _restored(out, (500, 540), "yx", zarr_format=zarr_format)
    _, node = _read(out)
    assert any(isinstance(s, OMERO) for s in node.specs)
    assert node.metadata["channel_names"] == ["restored", "uncertainty"]
    assert node.metadata["visible"] == [True, False]  # napari opens the std hidden
    channel = [a["name"] for a in node.metadata["axes"]].index("c")
    level0 = np.asarray(node.data[0])
    np.testing.assert_array_equal(np.take(level0, 0, axis=channel), image)
    np.testing.assert_allclose(np.take(level0, 1, axis=channel), image * 0.1, rtol=1e-6)
    list(info(str(out)))
    printed = capsys.readouterr().out
    assert "OMERO" in printed and "(2, 500, 540)" in printed


def test_several_input_channels_are_labelled_per_part(tmp_path):
    out = tmp_path / "restored.ome.zarr"
    _restored(out, (2, 300, 280), "cyx", zarr_format=3)
    _, node = _read(out)
    assert node.metadata["channel_names"] == [
        "restored c0",
        "restored c1",
        "uncertainty c0",
        "uncertainty c1",
    ]


@pytest.mark.parametrize("writer", ["restored", "one-shot"])
def test_ngff_04_chunk_keys_are_nested_with_slashes(tmp_path, writer):
    out = tmp_path / "out.ome.zarr"
    if writer == "restored":
        _restored(out, (300, 280), "yx", zarr_format=2)
    else:
        write_ome_zarr(out, np.ones((300, 280), np.float32), axes="yx", zarr_format=2)
    for level in ("0", "1"):
        meta = json.loads((out / level / ".zarray").read_text())
        assert meta["dimension_separator"] == "/"
    # the chunks lie in nested folders, as the 0.4 spec and ome-zarr-py's writer have it
    assert (out / "0" / "0").is_dir()
    chunk_files = [p for p in (out / "0").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert chunk_files and all(p.parent != out / "0" for p in chunk_files)


def test_input_dtype_keeps_the_restoration_exact_and_rounds_the_uncertainty(tmp_path):
    out = tmp_path / "restored.ome.zarr"
    image = _restored(out, (300, 280), "yx", zarr_format=3, dtype="uint16")
    _validate(out, 3)
    back = open_restored(out)
    assert back.image.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(back.image), np.rint(image).astype(np.uint16))
    np.testing.assert_array_equal(np.asarray(back.uncertainty), np.rint(image * 0.1))
    window = zarr.open_group(str(out)).attrs["ome"]["omero"]["channels"][0]["window"]
    assert (window["start"], window["end"]) == (0.0, 100.0)
