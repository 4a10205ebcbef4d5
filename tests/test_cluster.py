"""A real cluster by address: scheduler and workers started elsewhere, paths given relative.

The workers run in another working directory than the client (as on a cluster, where
they run on other machines), so every path must reach them absolute.
"""

from __future__ import annotations

import shutil

import dask.array as da
import numpy as np
import pytest
import tifffile

import tilesr
from tests.cluster import dask_cluster
from tests.reliability.conftest import assert_same_output, run_cli
from tilesr.options import RestoreOptions
from tilesr.restore_file import restore_file

pytestmark = pytest.mark.slow

FAST = ["--steps", "2", "--sampler", "ddim", "--block-size", "48", "--samples", "2"]
OPTIONS = RestoreOptions(steps=2, sampler="ddim", block_size=48, samples=2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("workers")) as address:
        yield address


@pytest.fixture
def here(tmp_path, models, monkeypatch):
    """A working directory holding in.tif and m.onnx, entered for the test."""
    rng = np.random.default_rng(5)
    image = (rng.random((40, 52)) * 2000 + 50).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", image, metadata={"axes": "YX"})
    shutil.copy(models["spatial2"], tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_with_relative_paths_on_a_cluster_by_address(here, cluster):
    ref = here / "ref" / "out.ome.zarr"
    code, output = run_cli("restore", here / "in.tif", ref, "--model", here / "m.onnx", *FAST)
    assert code == 0, output
    code, output = run_cli(
        "restore", "in.tif", "out.ome.zarr", "--model", "m.onnx", "--scheduler", cluster, *FAST
    )
    assert code == 0, output
    assert_same_output(here / "out.ome.zarr", ref)


def test_restore_file_and_restore_with_relative_paths_on_a_cluster(here, cluster):
    from distributed import Client

    ref = here / "ref" / "out.ome.zarr"
    restore_file(here / "in.tif", ref, OPTIONS, model=here / "m.onnx", progress=False)
    restore_file(
        "in.tif", "out.ome.zarr", OPTIONS, model="m.onnx", scheduler=cluster, progress=False
    )
    assert_same_output(here / "out.ome.zarr", ref)

    image = da.from_array(tifffile.imread(here / "in.tif"), chunks=20)
    local = tilesr.restore(image, "m.onnx", OPTIONS).image.compute(scheduler="threads")
    with Client(cluster) as client:
        remote = client.compute(tilesr.restore(image, "m.onnx", OPTIONS).image).result()
    np.testing.assert_array_equal(remote, local)
