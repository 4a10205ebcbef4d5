"""The engine issue's first acceptance test, in one place.

A simulated 3-D stack with odd sizes (3 x 150 x 129 LR -> 3 x 300 x 258 output) is
restored from OME-TIFF and from OME-Zarr, with a spatial model (tiles and seams matter):
shape, axes, pixel sizes and provenance are right, and the pixels are identical across
input formats, input chunkings, batch sizes, the threaded scheduler and a real
`distributed.LocalCluster` with 2 worker processes.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from tilesr.engine import restore
from tilesr.io import open_image, open_restored, write_ome_zarr
from tilesr.options import RestoreOptions
from tilesr.restore_file import restore_file
from tilesr.simulate import simulate_large

OPTIONS = {"steps": 2, "sampler": "dpmpp", "samples": 2, "seed": 3, "block_size": 96}


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    planes = [simulate_large((300, 258), scale=2, seed=s, chunk=150)[0] for s in range(3)]
    return np.stack([np.asarray(p) for p in planes]).astype(np.float32)


@pytest.fixture(scope="module")
def reference(stack, models):
    res = restore(
        da.from_array(stack),
        models["spatial2"],
        RestoreOptions(axes="zyx", uncertainty=True, **OPTIONS),
    )
    return res.image.compute(), res.uncertainty.compute()


@pytest.mark.parametrize("chunks", [(1, 150, 129), (3, 37, 53), (2, 64, 100)])
@pytest.mark.parametrize("batch_size", [1, 5, 16])
def test_identical_across_chunkings_and_batch_sizes(stack, models, reference, chunks, batch_size):
    res = restore(
        da.from_array(stack, chunks=chunks),
        models["spatial2"],
        RestoreOptions(axes="zyx", uncertainty=True, batch_size=batch_size, **OPTIONS),
    )
    assert res.image.shape == (3, 300, 258)
    assert np.array_equal(res.image.compute(), reference[0])
    assert np.array_equal(res.uncertainty.compute(), reference[1])


@pytest.mark.slow
def test_tiff_and_ome_zarr_files_threaded_and_local_cluster(tmp_path, stack, models, reference):
    tif = tmp_path / "stack.ome.tif"
    tifffile.imwrite(
        tif,
        stack,
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 0.5},
    )
    ome = tmp_path / "stack.ome.zarr"
    write_ome_zarr(
        ome,
        da.from_array(stack, chunks=(1, 64, 64)),
        axes="zyx",
        pixel_sizes={"z": 0.5, "y": 0.1, "x": 0.1},
    )
    runs = [(tif, None), (ome, None), (ome, "local-cluster:2")]
    for i, (src, scheduler) in enumerate(runs):
        out = tmp_path / f"out{i}.ome.zarr"
        restore_file(
            src,
            out,
            RestoreOptions(uncertainty=True, **OPTIONS),
            model=models["spatial2"],
            scheduler=scheduler,
            progress=False,
        )
        restored = open_image(out)
        assert restored.axes == "czyx"  # c: the restoration, then its uncertainty
        assert restored.pixel_sizes == pytest.approx({"z": 0.5, "y": 0.05, "x": 0.05})
        group = zarr.open_group(out, mode="r")
        assert group.attrs["tilesr"]["status"] == "complete"
        assert group.attrs["tilesr"]["settings"]["seed"] == OPTIONS["seed"]
        back = open_restored(out)
        assert back.axes == "zyx"
        assert np.array_equal(np.asarray(back.image), reference[0]), (src.name, scheduler)
        assert np.array_equal(np.asarray(back.uncertainty), reference[1]), (src.name, scheduler)
