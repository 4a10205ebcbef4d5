"""write_ome_zarr: valid NGFF 0.4 / 0.5, pyramid by 2x means, safe overwrite, dtype casts."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr

from tilesr.errors import TilesrError
from tilesr.io import open_image, write_ome_zarr
from tilesr.io.ome_writer import add_attributes, cast_to, pyramid_shapes, store_chunks


def _read_with_ome_zarr(path, zarr_format):
    """Nodes as ome-zarr-py's own reader sees them, failing on any warning or log warning."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    fmt = FormatV05() if zarr_format == 3 else FormatV04()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return list(Reader(parse_url(str(path), fmt=fmt))())


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_pyramid_is_valid_ngff(tmp_path, zarr_format, caplog):
    rng = np.random.default_rng(3)
    data = (rng.random((2, 600, 530)) * 60000).astype(np.uint16)
    path = tmp_path / "img.zarr"
    write_ome_zarr(
        path,
        da.from_array(data, chunks=(1, 200, 200)),
        axes="cyx",
        pixel_sizes={"y": 0.25, "x": 0.25},
        units={"y": "micrometer", "x": "micrometer"},
        zarr_format=zarr_format,
        attrs={"tilesr": {"note": "test"}},
    )
    with caplog.at_level(logging.WARNING):
        nodes = _read_with_ome_zarr(path, zarr_format)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    shapes = [tuple(level.shape) for level in nodes[0].data]
    # halved (odd edges dropped) until the smaller side is at most 256
    assert shapes == [(2, 600, 530), (2, 300, 265), (2, 150, 132)]
    assert shapes == pyramid_shapes((2, 600, 530))
    transforms = nodes[0].metadata["coordinateTransformations"]
    assert transforms[1][0]["scale"] == pytest.approx([1.0, 0.5, 0.5])
    # level 1 = mean of 2x2 blocks of level 0, in the input dtype
    level1 = np.asarray(nodes[0].data[1])
    expected = data[:, :600, :530].reshape(2, 300, 2, 265, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(level1, np.rint(expected).astype(np.uint16))
    attrs = dict(zarr.open_group(path, mode="r").attrs)
    assert attrs["tilesr"] == {"note": "test"}


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_validates_with_ome_zarr_models(tmp_path, zarr_format):
    models = pytest.importorskip("ome_zarr_models")
    del models
    if zarr_format == 3:
        from ome_zarr_models.v05.image import Image
    else:
        from ome_zarr_models.v04.image import Image
    path = tmp_path / "img.zarr"
    write_ome_zarr(path, np.ones((40, 50), np.float32), axes="yx", zarr_format=zarr_format)
    Image.from_zarr(zarr.open_group(path, mode="r"))


def test_pyramid_shapes_stop_below_min_side():
    assert pyramid_shapes((100, 100)) == [(100, 100)]
    assert pyramid_shapes((3, 1000, 2000)) == [(3, 1000, 2000), (3, 500, 1000), (3, 250, 500)]
    for shapes in (pyramid_shapes((5000, 300)), pyramid_shapes((257, 9000))):
        assert min(shapes[-1]) <= 256 < min(shapes[-2])


def test_store_chunks_align_with_irregular_dask_chunks():
    arr = da.zeros((2, 100, 90), chunks=((1, 1), (40, 40, 20), (30, 60)))
    chunks = store_chunks(arr)
    for axis, dim_chunks in enumerate(arr.chunks):
        for boundary in np.cumsum(dim_chunks)[:-1]:
            assert boundary % chunks[axis] == 0


def test_existing_output_is_refused_then_overwritten(tmp_path):
    path = tmp_path / "img.zarr"
    write_ome_zarr(path, np.zeros((20, 20), np.uint8), axes="yx")
    with pytest.raises(TilesrError, match="--overwrite"):
        write_ome_zarr(path, np.ones((20, 20), np.uint8), axes="yx")
    write_ome_zarr(path, np.ones((20, 30), np.uint8), axes="yx", overwrite=True)
    assert open_image(path).data.shape == (20, 30)


def test_a_deletion_killed_midway_leaves_nothing_at_the_output(tmp_path, monkeypatch):
    # the old store is renamed away before it is deleted: a kill during the deletion
    # (here: rmtree dies after removing the zarr metadata) leaves no folder at the output
    # that no longer looks like a zarr store, and the next --overwrite cleans up after it
    import shutil

    from tilesr.io import ome_writer

    path = tmp_path / "img.zarr"
    write_ome_zarr(path, np.zeros((20, 20), np.uint8), axes="yx")
    real_rmtree = shutil.rmtree

    def killed_rmtree(folder, *args, **kwargs):
        (Path(folder) / "zarr.json").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(ome_writer.shutil, "rmtree", killed_rmtree)
    with pytest.raises(KeyboardInterrupt):
        write_ome_zarr(path, np.ones((20, 20), np.uint8), axes="yx", overwrite=True)
    assert not path.exists()
    monkeypatch.setattr(ome_writer.shutil, "rmtree", real_rmtree)
    write_ome_zarr(path, np.ones((20, 30), np.uint8), axes="yx")
    write_ome_zarr(path, np.ones((20, 40), np.uint8), axes="yx", overwrite=True)
    assert open_image(path).data.shape == (20, 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.zarr"]


def test_overwrite_refuses_to_delete_a_non_zarr_folder(tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.txt").write_text("do not delete")
    with pytest.raises(TilesrError, match="not a zarr store"):
        write_ome_zarr(folder, np.zeros((8, 8), np.uint8), axes="yx", overwrite=True)
    assert (folder / "thesis.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"axes": "xy"}, "end with 'yx'"),
        ({"axes": "zyx"}, "name 3 dimensions"),
        ({"axes": "yx", "pixel_sizes": {"y": 0.0}}, "positive"),
        ({"axes": "yx", "zarr_format": 4}, "zarr format"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(TilesrError, match=message):
        write_ome_zarr(tmp_path / "x.zarr", np.zeros((8, 8), np.float32), **kwargs)
    assert not (tmp_path / "x.zarr").exists()


def test_cast_to_clips_and_rounds_without_wrapping():
    values = np.array([-3.7, 0.4, 0.5, 1.5, 254.6, 300.0, np.nan, np.inf, -np.inf])
    out = cast_to(values, np.dtype(np.uint8))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 0, 0, 2, 255, 255, 0, 255, 0])
    big = cast_to(np.array([1e6, -1e6]), np.dtype(np.int16))
    np.testing.assert_array_equal(big, [32767, -32768])
    half = cast_to(np.array([1e6], dtype=np.float64), np.dtype(np.float16))
    assert np.isfinite(half).all()


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_attributes_are_added_in_one_metadata_write(tmp_path, zarr_format, monkeypatch):
    # a kill between two writes would leave the image declared with an "incomplete" status
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=zarr_format)
    group.attrs["tilesr"] = {"status": "incomplete"}
    written = []
    real_set = zarr.storage.LocalStore.set

    async def recording_set(self, key, value):
        written.append(key)
        await real_set(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", recording_set)
    add_attributes(group, {"ome": {"version": "0.5"}, "tilesr": {"status": "complete"}})
    monkeypatch.undo()
    assert len([key for key in written if key in ("zarr.json", ".zattrs")]) == 1, written
    attrs = zarr.open_group(str(tmp_path / "g.zarr"), mode="r").attrs.asdict()
    assert attrs == {"ome": {"version": "0.5"}, "tilesr": {"status": "complete"}}
