"""A second opinion on the NGFF metadata tilesr writes by hand: ome-zarr's own reader.

tilesr does not depend on ome-zarr (its writer cannot declare the image and mark it
complete in one atomic attribute write, which the resumable writer needs); the test extra
installs it so that both NGFF versions tilesr writes are read back by the reference
implementation.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from ome_zarr.io import parse_url
from ome_zarr.reader import Multiscales, Reader

from tilesr.io import write_ome_zarr, write_restored
from tilesr.io.restored import OutputState


def _read(path):
    location = parse_url(str(path))
    assert location is not None, path
    (node,) = [n for n in Reader(location)() if any(isinstance(s, Multiscales) for s in n.specs)]
    return location.version, node


@pytest.mark.parametrize(("zarr_format", "version"), [(2, "0.4"), (3, "0.5")])
def test_write_ome_zarr_reads_back_in_ome_zarr(tmp_path, zarr_format, version):
    image = np.random.default_rng(0).uniform(0, 100, (3, 600, 520)).astype(np.float32)
    out = tmp_path / "img.ome.zarr"
    sizes = {"z": 2.0, "y": 0.1, "x": 0.1}
    units = {"y": "micrometer", "x": "micrometer"}
    write_ome_zarr(out, image, axes="zyx", pixel_sizes=sizes, units=units, zarr_format=zarr_format)
    found, node = _read(out)
    assert found == version
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert [d.shape for d in node.data] == [(3, 600, 520), (3, 300, 260), (3, 150, 130)]
    np.testing.assert_array_equal(np.asarray(node.data[0]), image)
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[2.0, 0.1, 0.1], [2.0, 0.2, 0.2], [2.0, 0.4, 0.4]]


@pytest.mark.parametrize(("zarr_format", "version"), [(2, "0.4"), (3, "0.5")])
def test_a_restored_output_reads_back_in_ome_zarr(tmp_path, zarr_format, version):
    image = da.random.default_rng(1).uniform(0, 1, (500, 540), chunks=128).astype(np.float32)
    out = tmp_path / "restored.ome.zarr"
    write_restored(
        out,
        image,
        image * 0.1,
        axes="yx",
        zarr_format=zarr_format,
        fingerprint={"k": 1},
        state=OutputState.NEW,
    )
    found, node = _read(out)
    assert found == version
    assert [d.shape for d in node.data] == [(500, 540), (250, 270)]
    np.testing.assert_array_equal(np.asarray(node.data[0]), image.compute())
    _, uncertainty = _read(out / "uncertainty")
    np.testing.assert_allclose(np.asarray(uncertainty.data[0]), image.compute() * 0.1)
