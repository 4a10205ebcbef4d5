"""open_image: OME-Zarr 0.4/0.5, plain zarr, TIFF flavours, laziness, pickling, errors."""

from __future__ import annotations

import json
import logging

import cloudpickle
import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from tilesr.errors import TilesrError
from tilesr.io import open_image, write_ome_zarr
from tilesr.io import readers as readers_mod


@pytest.fixture
def stack():
    rng = np.random.default_rng(0)
    return (rng.random((3, 70, 90)) * 4000).astype(np.uint16)


# ------------------------------------------------------------------ OME-Zarr


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_round_trip_own_writer(tmp_path, stack, zarr_format):
    path = tmp_path / "img.zarr"
    write_ome_zarr(
        path,
        da.from_array(stack, chunks=(1, 32, 32)),
        axes="zyx",
        pixel_sizes={"z": 0.5, "y": 0.1, "x": 0.12},
        units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
        zarr_format=zarr_format,
    )
    image = open_image(path)
    assert image.kind == "ome-zarr"
    assert image.axes == "zyx"
    assert isinstance(image.data, da.Array)
    np.testing.assert_array_equal(image.data.compute(), stack)
    assert image.pixel_sizes == pytest.approx({"z": 0.5, "y": 0.1, "x": 0.12})
    assert image.units == {"z": "micrometer", "y": "micrometer", "x": "micrometer"}
    marker = "zarr.json" if zarr_format == 3 else ".zattrs"
    assert (path / marker).exists()


@pytest.mark.filterwarnings("ignore:Call to deprecated class Scaler:DeprecationWarning")
@pytest.mark.parametrize("fmt_name", ["FormatV04", "FormatV05"])
def test_reads_ome_zarr_written_by_ome_zarr_py(tmp_path, stack, fmt_name):
    from ome_zarr import format as ome_format
    from ome_zarr.writer import write_image

    fmt = getattr(ome_format, fmt_name)()
    group = zarr.open_group(tmp_path / "ext.zarr", mode="w", zarr_format=fmt.zarr_format)
    write_image(
        stack,
        group,
        axes="zyx",
        fmt=fmt,
        scale_factors=[2],
        scale={"z": 2.0, "y": 0.3, "x": 0.3},
        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )
    full = open_image(tmp_path / "ext.zarr")
    np.testing.assert_array_equal(full.data.compute(), stack)
    assert full.pixel_sizes == pytest.approx({"z": 2.0, "y": 0.3, "x": 0.3})
    half = open_image(tmp_path / "ext.zarr", level=1)
    assert half.data.shape == (3, 35, 45)
    # a 2x coarser level has twice the pixel size in y/x, not in z
    assert half.pixel_sizes == pytest.approx({"z": 2.0, "y": 0.6, "x": 0.6})


def test_level_out_of_range_names_the_levels(tmp_path, stack):
    write_ome_zarr(tmp_path / "a.zarr", stack, axes="zyx")
    with pytest.raises(TilesrError, match=r"level 5 is out of range.*1 level"):
        open_image(tmp_path / "a.zarr", level=5)
    with pytest.raises(TilesrError, match="non-negative"):
        open_image(tmp_path / "a.zarr", level=-1)


def test_axes_override_renames_and_keeps_scales(tmp_path, stack):
    write_ome_zarr(tmp_path / "a.zarr", stack, axes="zyx", pixel_sizes={"z": 3.0})
    image = open_image(tmp_path / "a.zarr", axes="tyx")
    assert image.axes == "tyx"
    assert image.pixel_sizes["t"] == 3.0


def _write_attrs(path, attrs):
    """Rewrite the v3 group attributes of an OME-Zarr to test absurd metadata."""
    meta_file = path / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["attributes"] = attrs
    meta_file.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda ms: ms["datasets"][0]["coordinateTransformations"][0].update(scale=[1, -1, 1]),
            "positive",
        ),
        (
            lambda ms: ms["datasets"][0]["coordinateTransformations"][0].update(scale=[1, 0, 1]),
            "positive",
        ),
        (
            lambda ms: ms["datasets"][0]["coordinateTransformations"][0].update(
                scale=[1, "NaN", 1]
            ),
            "positive",
        ),
        (
            lambda ms: ms["datasets"][0]["coordinateTransformations"][0].update(scale=[1, 1]),
            "one entry per axis",
        ),
        (lambda ms: ms["axes"].pop(0), "declares 2 axes"),
        (lambda ms: ms.update(datasets=[]), "no datasets"),
        (lambda ms: ms["datasets"][0].update(path="missing"), "cannot be opened"),
        (lambda ms: ms["axes"][0].update(name="angle"), "not among"),
    ],
)
def test_absurd_metadata_is_refused(tmp_path, stack, mutate, message):
    path = tmp_path / "a.zarr"
    write_ome_zarr(path, stack, axes="zyx")
    attrs = dict(zarr.open_group(path, mode="r").attrs)
    mutate(attrs["ome"]["multiscales"][0])
    _write_attrs(path, attrs)
    with pytest.raises(TilesrError, match=message):
        open_image(path)


def test_group_without_multiscales(tmp_path):
    zarr.open_group(tmp_path / "g.zarr", mode="w")
    with pytest.raises(TilesrError, match="multiscales"):
        open_image(tmp_path / "g.zarr")


# ------------------------------------------------------------------ plain zarr


def test_plain_zarr_2d_defaults_to_yx(tmp_path):
    data = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    zarr.save_array(str(tmp_path / "p.zarr"), data)
    image = open_image(tmp_path / "p.zarr")
    assert (image.axes, image.kind) == ("yx", "zarr")
    np.testing.assert_array_equal(image.data.compute(), data)


def test_plain_zarr_3d_needs_axes(tmp_path, stack):
    zarr.save_array(str(tmp_path / "p.zarr"), stack)
    with pytest.raises(TilesrError, match=r"\(3, 70, 90\).*--axes"):
        open_image(tmp_path / "p.zarr")
    assert open_image(tmp_path / "p.zarr", axes="cyx").axes == "cyx"


@pytest.mark.parametrize("bad", ["yxz", "yyx", "zYX", "abyx", "yx", ""])
def test_bad_axes_override(tmp_path, stack, bad):
    zarr.save_array(str(tmp_path / "p.zarr"), stack)
    with pytest.raises(TilesrError):
        open_image(tmp_path / "p.zarr", axes=bad)


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_])
def test_unsupported_dtype(tmp_path, dtype):
    zarr.save_array(str(tmp_path / "p.zarr"), np.zeros((8, 8), dtype=dtype))
    with pytest.raises(TilesrError, match="pixel type"):
        open_image(tmp_path / "p.zarr")


def test_empty_axis(tmp_path):
    zarr.save_array(str(tmp_path / "p.zarr"), np.zeros((0, 8), dtype=np.float32))
    with pytest.raises(TilesrError, match="empty axis"):
        open_image(tmp_path / "p.zarr")


# ------------------------------------------------------------------ TIFF


def test_ome_tiff_axes_and_physical_sizes(tmp_path, stack):
    path = tmp_path / "a.ome.tif"
    tifffile.imwrite(
        path,
        stack,
        ome=True,
        tile=(32, 32),
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.1,
            "PhysicalSizeY": 0.2,
            "PhysicalSizeZ": 0.5,
            "PhysicalSizeXUnit": "nm",
        },
    )
    image = open_image(path)
    assert (image.axes, image.kind) == ("zyx", "ome-tiff")
    assert image.pixel_sizes == pytest.approx({"z": 0.5, "y": 0.2, "x": 0.1})
    assert image.units == {"z": "micrometer", "y": "micrometer", "x": "nanometer"}
    np.testing.assert_array_equal(image.data.compute(), stack)


def test_ome_tiff_pyramid_level(tmp_path, stack):
    path = tmp_path / "pyr.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            stack,
            subifds=1,
            tile=(32, 32),
            metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2},
        )
        tw.write(stack[:, ::2, ::2], subfiletype=1, tile=(32, 32))
    level1 = open_image(path, level=1)
    np.testing.assert_array_equal(level1.data.compute(), stack[:, ::2, ::2])
    assert level1.pixel_sizes["x"] == pytest.approx(0.2 * 90 / 45)
    with pytest.raises(TilesrError, match="level 2 is out of range"):
        open_image(path, level=2)


def test_imagej_hyperstack(tmp_path, stack):
    data = np.stack([stack, stack // 2], axis=1)  # ZCYX
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(4.0, 5.0),
        metadata={"axes": "ZCYX", "spacing": 0.75, "unit": "um"},
    )
    image = open_image(path)
    assert (image.axes, image.kind) == ("zcyx", "imagej-tiff")
    assert image.pixel_sizes == pytest.approx({"z": 0.75, "y": 0.2, "x": 0.25})
    assert image.units["x"] == "micrometer"
    np.testing.assert_array_equal(image.data.compute(), data)


def test_bigtiff_stack_of_planes_is_z(tmp_path, stack):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, stack, bigtiff=True, photometric="minisblack")
    image = open_image(path)
    assert (image.axes, image.kind) == ("zyx", "tiff")
    np.testing.assert_array_equal(image.data.compute(), stack)


def test_rgb_tiff_needs_axes(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb)
    with pytest.raises(TilesrError, match=r"RGB samples.*--axes 'cyx'"):
        open_image(path)
    image = open_image(path, axes="cyx")
    np.testing.assert_array_equal(image.data.compute(), np.moveaxis(rgb, -1, 0))


def test_ambiguous_tiff_axes_need_override(tmp_path):
    path = tmp_path / "q.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 16, 16), np.uint8), photometric="minisblack")
    with pytest.raises(TilesrError, match="--axes"):
        open_image(path)
    assert open_image(path, axes="tzyx").axes == "tzyx"


@pytest.mark.parametrize("pages", ["shaped", "plain"])
def test_a_3d_tiff_without_axis_metadata_is_zyx_with_a_notice(tmp_path, stack, caplog, pages):
    path = tmp_path / "planes.tif"
    metadata = {} if pages == "shaped" else None  # plain: pages with no description at all
    tifffile.imwrite(path, stack, photometric="minisblack", metadata=metadata)
    with caplog.at_level(logging.WARNING, logger="tilesr"):
        image = open_image(path)
    assert image.axes == "zyx"
    (notice,) = [r.getMessage() for r in caplog.records]
    assert "no axis metadata" in notice and "'zyx'" in notice
    assert "pixel sizes are unknown" in notice and "--axes" in notice
    assert "\n" not in notice


def test_tiff_axes_from_metadata_give_no_notice(tmp_path, stack, caplog):
    path = tmp_path / "zyx.tif"
    tifffile.imwrite(path, stack, photometric="minisblack", metadata={"axes": "ZYX"})
    with caplog.at_level(logging.WARNING, logger="tilesr"):
        assert open_image(path).axes == "zyx"
    assert not caplog.records


def test_a_4d_tiff_with_an_unnamed_axis_is_refused_proposing_axes(tmp_path):
    # T is named, the second axis is not: it might be z, c or anything
    path = tmp_path / "tq.tif"
    data = np.zeros((2, 3, 16, 16), np.uint8)
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "TQYX"})
    with pytest.raises(TilesrError, match=r"does not say what its axes are.*--axes.*'czyx'"):
        open_image(path)
    assert open_image(path, axes="tzyx").data.shape == data.shape


@pytest.mark.parametrize(
    ("flavour", "shape", "file_axes", "axes"),
    [
        ("ome", (1, 3, 20, 24), "CZYX", "czyx"),
        ("ome", (1, 20, 24), "CYX", "cyx"),
        ("imagej", (3, 1, 20, 24), "ZCYX", "czyx"),  # ImageJ orders ZC; named where wanted
    ],
)
def test_a_singleton_axis_the_user_names_is_kept(tmp_path, flavour, shape, file_axes, axes):
    data = np.random.default_rng(0).integers(0, 999, shape, dtype=np.uint16)
    path = tmp_path / "one-channel.tif"
    kind = {"ome": True} if flavour == "ome" else {"imagej": True}
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": file_axes}, **kind)
    squeezed = data.reshape([n for n in shape if n > 1])
    assert open_image(path).data.shape == squeezed.shape  # tifffile squeezes it away
    image = open_image(path, axes=axes)
    assert image.axes == axes
    assert image.data.shape == squeezed.reshape([1, *squeezed.shape]).shape
    np.testing.assert_array_equal(image.data.compute()[0], squeezed)


def test_tiff_graph_pickles_and_reads_in_another_process_state(tmp_path, stack):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, stack, photometric="minisblack", tile=(32, 32))
    image = open_image(path)
    blob = cloudpickle.dumps(image.data)
    readers_mod._close_tiff_cache()  # as in a fresh worker: nothing opened yet
    clone = cloudpickle.loads(blob)
    np.testing.assert_array_equal(clone.compute(), stack)


def test_zarr_graph_pickles(tmp_path, stack):
    write_ome_zarr(tmp_path / "a.zarr", stack, axes="zyx")
    clone = cloudpickle.loads(cloudpickle.dumps(open_image(tmp_path / "a.zarr").data))
    np.testing.assert_array_equal(clone.compute(), stack)


def test_tiff_reads_only_needed_regions(tmp_path, monkeypatch):
    data = np.arange(256 * 320, dtype=np.uint16).reshape(256, 320)
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, data, tile=(32, 32))
    monkeypatch.setattr(readers_mod, "TARGET_CHUNK", 64)
    image = open_image(path)
    assert image.data.numblocks == (4, 5)
    reads = []
    original = readers_mod._TiffRegion.__getitem__

    def spy(self, key):
        reads.append(key)
        return original(self, key)

    monkeypatch.setattr(readers_mod._TiffRegion, "__getitem__", spy)
    with dask.config.set(scheduler="sync"):
        corner = image.data[:64, :64].compute()
    np.testing.assert_array_equal(corner, data[:64, :64])
    assert reads == [(slice(0, 64), slice(0, 64))]


def test_truncated_tiff(tmp_path, stack):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    raw = path.read_bytes()
    # keep the header and first IFD (tifffile writes IFDs before contiguous data)
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TilesrError, match="truncated") as info:
        open_image(path)
    assert "\n" not in str(info.value)


def test_garbage_tiff(tmp_path):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 64)
    with pytest.raises(TilesrError, match="not a readable TIFF"):
        open_image(path)


def test_missing_and_unsupported_paths(tmp_path):
    with pytest.raises(TilesrError, match="does not exist"):
        open_image(tmp_path / "nope.tif")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TilesrError, match="not a supported image"):
        open_image(tmp_path / "notes.txt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(TilesrError, match="zarr"):
        open_image(tmp_path / "empty_dir")
