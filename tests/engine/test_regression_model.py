"""A regression (CARE-like) model in the engine: one evaluation per tile, tiled and streamed."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from tests.onnx_models import regression_metadata, regression_model, spatial_kernels
from tilesr.cli import main
from tilesr.data.conditioning import conditioning
from tilesr.denoisers.onnx_backend import OnnxDenoiser
from tilesr.engine import restore
from tilesr.errors import TilesrError
from tilesr.io import open_restored
from tilesr.options import RestoreOptions

SHAPE = (61, 75)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    meta = regression_metadata(scale=2, size_multiple=4)
    return regression_model(tmp_path_factory.mktemp("reg") / "regression.onnx", metadata=meta)


@pytest.fixture(scope="module")
def lr():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return (300 + 500 * np.sin(yy / 5.0) * np.cos(xx / 7.0) + rng.normal(0, 20, SHAPE)).astype(
        np.float32
    )


class Counting:
    """Counts the tiles a denoiser is asked for."""

    def __init__(self, inner):
        self.inner, self.metadata, self.tiles = inner, inner.metadata, 0

    def predict(self, noisy, cond, t):
        self.tiles += len(cond)
        return self.inner.predict(noisy, cond, t)


def test_one_network_evaluation_per_tile(model, lr):
    den = Counting(OnnxDenoiser(model))
    res = restore(lr, den, RestoreOptions(batch_size=3))
    image = res.image.compute(scheduler="synchronous")
    assert res.tiles == den.tiles and res.plan.options.steps == 1
    assert res.plan.options.samples == 1
    assert image.shape == (2 * SHAPE[0], 2 * SHAPE[1])


def test_tiled_output_is_the_blended_regression_of_the_whole_image(model, lr):
    from scipy import ndimage

    res = restore(lr, model)
    image = res.image.compute()
    intensity = res.intensity_range
    cond = conditioning(lr, 2, intensity)
    whole = ndimage.convolve(cond, 0.8 * spatial_kernels()[0, 0], mode="constant")
    expected = intensity.denormalize(np.clip(whole, -1, 1))
    # tiles zero-pad their 2-px border, where the blend weights are small but not zero
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(image - expected)[inner].mean() < 1e-3 * intensity.span


def test_bit_identical_whatever_the_chunking_and_batch(model, lr):
    ref = restore(lr, model, RestoreOptions(block_size=48)).image.compute()
    for chunks, batch in (((13, 29), 1), ((61, 7), 5)):
        res = restore(
            da.from_array(lr, chunks=chunks), model, RestoreOptions(block_size=48, batch_size=batch)
        )
        with dask.config.set(scheduler="threads"):
            assert np.array_equal(res.image.compute(), ref)


@pytest.mark.parametrize(
    "option,message",
    [({"samples": 4}, "samples 4 do not apply"), ({"sampler": "dpmpp"}, "sampler 'dpmpp'")],
)
def test_sampling_options_are_refused_for_a_regression_model(model, lr, option, message):
    with pytest.raises(TilesrError, match=f"regression model.*{message}"):
        restore(lr, model, RestoreOptions(**option))


def test_cli_restores_with_a_regression_model(model, lr, tmp_path):
    tifffile.imwrite(tmp_path / "in.tif", lr)
    runner = CliRunner()
    out = tmp_path / "out.ome.zarr"
    result = runner.invoke(
        main,
        ["restore", str(tmp_path / "in.tif"), str(out), "--model", str(model), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    import zarr

    written = np.asarray(zarr.open_group(str(out), mode="r")["0"])
    assert np.array_equal(written, restore(lr, model).image.compute())
    assert open_restored(out).uncertainty is None
    bad = runner.invoke(
        main,
        [
            "restore",
            str(tmp_path / "in.tif"),
            str(tmp_path / "o2.ome.zarr"),
            "--model",
            str(model),
            "--samples",
            "4",
            "--no-progress",
        ],
    )
    assert bad.exit_code == 1 and "regression model" in bad.output
    assert "Traceback" not in bad.output
    assert not (tmp_path / "o2.ome.zarr").exists()
