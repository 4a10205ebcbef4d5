"""restore(): equal to whole-image sampling for a per-pixel model, deterministic, lazy."""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import pytest

from tests.onnx_models import model_with_wrong_rank, model_without_metadata
from tilesr.data.conditioning import conditioning
from tilesr.data.normalize import IntensityRange, percentile_range
from tilesr.denoisers.onnx_backend import OnnxDenoiser
from tilesr.diffusion import build_schedule, make_sampler
from tilesr.diffusion.consistency import make_consistent
from tilesr.diffusion.sampling import sample
from tilesr.diffusion.uncertainty import predictive_std
from tilesr.engine import restore
from tilesr.errors import TilesrError
from tilesr.options import RestoreOptions

SHAPE = (70, 83)
STEPS = 6


@pytest.fixture(scope="module")
def lr():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    structure = 200 + 800 * np.exp(-((yy - 30) ** 2 + (xx - 40) ** 2) / 300.0)
    return (structure + rng.normal(0, 40, SHAPE)).astype(np.float32)


def _untiled(
    model_path, lr, *, samples, sampler="dpmpp", plane=0, intensity=None, antithetic=False
):
    den = OnnxDenoiser(model_path)
    meta = den.metadata
    intensity = intensity or percentile_range(lr, meta.norm_low, meta.norm_high)
    cond = conditioning(lr, meta.scale, intensity)
    s = make_sampler(sampler, build_schedule(meta.schedule))
    res = sample(
        den, cond, s, n_samples=samples, steps=STEPS, seed=5, plane=plane, antithetic=antithetic
    )
    # the engine's uncertainty: the predicted error std of the mean, not the plain std
    std = predictive_std(res.samples, antithetic=antithetic)
    return intensity.denormalize(res.mean), std * np.float32(intensity.span / 2)


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("fuse", ["step", "final"])
@pytest.mark.parametrize("sampler", ["dpmpp", "ddpm"])
def test_per_pixel_model_equals_untiled_sampling_exactly(models, lr, scale, fuse, sampler):
    # the analytic model is per pixel, so tiles, blocks and blending must not change a bit
    res = restore(
        da.from_array(lr, chunks=(17, 29)),
        models[f"analytic{scale}"],
        RestoreOptions(
            samples=2,
            steps=STEPS,
            sampler=sampler,
            seed=5,
            block_size=40,
            fuse=fuse,
            uncertainty=True,
        ),
    )
    image, std = dask.compute(res.image, res.uncertainty)
    ref_mean, ref_std = _untiled(models[f"analytic{scale}"], lr, samples=2, sampler=sampler)
    assert image.shape == (SHAPE[0] * scale, SHAPE[1] * scale) and image.dtype == np.float32
    assert np.array_equal(image, ref_mean)
    np.testing.assert_allclose(std, ref_std, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("fuse", ["step", "final"])
def test_antithetic_samples_equal_untiled_sampling_exactly(models, lr, fuse):
    # 3 samples: one antithetic pair and a lone draw, keyed like independent samples 0, 1
    options = RestoreOptions(
        samples=3, steps=STEPS, seed=5, block_size=40, fuse=fuse, sample_noise="antithetic"
    )
    res = restore(da.from_array(lr, chunks=(17, 29)), models["analytic2"], options)
    image, std = dask.compute(res.image, res.uncertainty)
    ref_mean, ref_std = _untiled(models["analytic2"], lr, samples=3, antithetic=True)
    assert np.array_equal(image, ref_mean)
    np.testing.assert_allclose(std, ref_std, rtol=1e-5, atol=1e-3)
    independent, _ = _untiled(models["analytic2"], lr, samples=3)
    assert not np.array_equal(image, independent)


def test_consistency_is_applied_to_every_sample_as_on_the_whole_image(models, lr):
    # per-pixel model: the engine's blocks equal the whole image's samples made
    # consistent at once, bit for bit (the blocks' canvases hold the reach)
    options = RestoreOptions(samples=2, steps=STEPS, seed=5, block_size=40, consistency=1.5)
    res = restore(da.from_array(lr, chunks=(17, 29)), models["analytic2"], options)
    image, std = dask.compute(res.image, res.uncertainty)
    den = OnnxDenoiser(models["analytic2"])
    intensity = percentile_range(lr, den.metadata.norm_low, den.metadata.norm_high)
    cond = conditioning(lr, 2, intensity)
    sampler = make_sampler("dpmpp", build_schedule(den.metadata.schedule))
    raw = sample(den, cond, sampler, n_samples=2, steps=STEPS, seed=5).samples
    made = make_consistent(raw, cond, sigma=1.5, scale=2)
    assert np.array_equal(image, intensity.denormalize(made.mean(0)))
    expected_std = predictive_std(made) * np.float32(intensity.span / 2)
    np.testing.assert_allclose(std, expected_std, rtol=1e-5, atol=1e-3)
    plain, _ = _untiled(models["analytic2"], lr, samples=2)
    assert np.abs(image - plain).mean() > 1.0  # and it did change the restoration
    assert res.plan.record()["consistency"] == 1.5


def test_output_chunks_are_the_blocks(models, lr):
    res = restore(da.from_array(lr), models["spatial2"], RestoreOptions(steps=2, block_size=48))
    assert res.image.shape == (140, 166)
    assert res.image.chunks == ((48, 48, 44), (48, 48, 48, 22))
    assert res.uncertainty is None
    assert res.plan.block_size == 48 and res.plan.options.fuse == "step"
    assert res.tiles > 0


def test_default_block_is_a_stride_multiple_clipped_to_the_image(models, lr):
    res = restore(da.from_array(lr), models["spatial1"], RestoreOptions(steps=2))
    assert res.plan.block_size % (32 - 8) == 0
    assert res.image.chunks == ((70,), (83,))


@pytest.mark.parametrize("consistency", [0.0, 1.5])
def test_identical_across_chunkings_and_batch_sizes(models, lr, consistency):
    lr = lr[:48, :60]
    kwargs = {"samples": 2, "steps": 3, "block_size": 48, "uncertainty": True, "seed": 1}
    kwargs["consistency"] = consistency
    ref = restore(da.from_array(lr), models["spatial2"], RestoreOptions(batch_size=8, **kwargs))
    ref_img, ref_std = dask.compute(ref.image, ref.uncertainty)
    for chunks, batch in [((13, 80), 1), ((48, 7), 3), ((35, 41), 16)]:
        arr = da.from_array(lr, chunks=chunks)
        res = restore(arr, models["spatial2"], RestoreOptions(batch_size=batch, **kwargs))
        img, std = dask.compute(res.image, res.uncertainty)
        assert np.array_equal(img, ref_img), (chunks, batch)
        assert np.array_equal(std, ref_std), (chunks, batch)


def test_identical_across_workers_and_schedulers(models, lr):
    res = restore(da.from_array(lr), models["spatial1"], RestoreOptions(steps=3, block_size=32))
    single = res.image.compute(scheduler="synchronous")
    threaded = res.image.compute(scheduler="threads", num_workers=2)
    assert np.array_equal(single, threaded)


def test_spatial_model_restores_close_to_the_conditioning(models, lr):
    # sanity of the whole chain: std 0.02 in model units means output ~ blurred input
    res = restore(da.from_array(lr), models["spatial1"], RestoreOptions(steps=STEPS))
    out = res.image.compute()
    span = res.intensity_range.span
    assert np.abs(out - lr).mean() < 0.05 * span


@pytest.mark.parametrize("plane_noise", ["independent", "shared"])
def test_leading_axes_are_planes_with_their_noise(models, lr, plane_noise):
    stack = np.stack([lr, lr[::-1], lr * 0.5])
    intensity = IntensityRange(100.0, 1100.0)
    options = RestoreOptions(
        axes="zyx", samples=1, steps=STEPS, seed=5, block_size=40, plane_noise=plane_noise
    )
    res = restore(
        da.from_array(stack, chunks=(2, 30, 30)),
        models["analytic1"],
        options,
        intensity_range=intensity,
    )
    assert res.image.chunks[0] == (1, 1, 1)
    out = res.image.compute()
    for p in range(3):
        key = p if plane_noise == "independent" else 0  # shared: plane 0's noise
        ref, _ = _untiled(models["analytic1"], stack[p], samples=1, plane=key, intensity=intensity)
        assert np.array_equal(out[p], ref)
    # independent: the plane index is in the noise key, so identical inputs differ
    twin = restore(
        da.from_array(np.stack([lr, lr])),
        models["analytic1"],
        RestoreOptions(steps=STEPS, plane_noise=plane_noise),
        intensity_range=intensity,
    ).image.compute()
    assert np.array_equal(twin[0], twin[1]) == (plane_noise == "shared")


def test_two_leading_axes(models, lr):
    stack = np.stack([np.stack([lr, lr + 1]), np.stack([lr + 2, lr + 3])])[..., :40, :40]
    res = restore(da.from_array(stack), models["spatial2"], RestoreOptions(axes="czyx", steps=2))
    assert res.image.shape == (2, 2, 80, 80)
    assert res.image.chunks[:2] == ((1, 1), (1, 1))
    assert np.isfinite(res.image.compute()).all()


def test_uncertainty_zero_for_one_sample_positive_for_more(models, lr):
    one = restore(
        da.from_array(lr), models["analytic1"], RestoreOptions(steps=STEPS, uncertainty=True)
    )
    assert np.all(one.uncertainty.compute() == 0)
    many = restore(
        da.from_array(lr),
        models["analytic1"],
        RestoreOptions(steps=STEPS, samples=4, uncertainty=True),
    )
    std = many.uncertainty.compute()
    # x0 ~ N(cond, 0.5^2) in model units: std about 0.5 * span / 2 raw, within sampling error
    expected = 0.5 * many.intensity_range.span / 2
    assert 0.6 * expected < std.mean() < 1.1 * expected


@dataclass
class CountingDenoiser:
    """Wraps a denoiser and counts the tiles it is shown."""

    inner: OnnxDenoiser

    def __post_init__(self):
        self.metadata = self.inner.metadata
        self.tiles = 0

    def predict(self, noisy, cond, t):
        self.tiles += len(noisy)
        return self.inner.predict(noisy, cond, t)


def test_skip_background_keeps_the_input_and_saves_work(models):
    img = np.zeros((96, 96), dtype=np.float32)
    img[:, 60:] = np.random.default_rng(0).uniform(500, 1000, (96, 36))
    intensity = IntensityRange(0.0, 1000.0)
    full = CountingDenoiser(OnnxDenoiser(models["spatial1"]))
    ref = restore(
        da.from_array(img), full, RestoreOptions(steps=3), intensity_range=intensity
    ).image.compute()
    skip = CountingDenoiser(OnnxDenoiser(models["spatial1"]))
    out = restore(
        da.from_array(img),
        skip,
        RestoreOptions(steps=3, skip_background=0.1),
        intensity_range=intensity,
    ).image.compute()
    assert 0 < skip.tiles < full.tiles
    # columns only dark tiles cover are the input itself
    np.testing.assert_allclose(out[:, :24], 0.0, atol=1e-3)
    # the bright part is restored as without skipping
    assert np.abs(out[:, 72:] - ref[:, 72:]).mean() < 0.01 * intensity.span


def test_input_percentiles_are_global(models, lr):
    res = restore(da.from_array(lr, chunks=(10, 10)), models["analytic1"], RestoreOptions(steps=1))
    expected = percentile_range(lr, 1.0, 99.9)
    assert res.intensity_range.low == pytest.approx(expected.low)
    assert res.intensity_range.high == pytest.approx(expected.high)


def test_restore_is_lazy(models, lr):
    calls = CountingDenoiser(OnnxDenoiser(models["analytic1"]))
    res = restore(
        da.from_array(lr), calls, RestoreOptions(steps=2), intensity_range=IntensityRange(0, 1)
    )
    assert calls.tiles == 0
    res.image[:10, :10].compute()
    assert calls.tiles > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"samples": 0}, "samples"),
        ({"steps": 0}, "steps"),
        ({"sampler": "euler"}, "euler"),
        ({"fuse": "never"}, "never"),
        ({"batch_size": 0}, "batch"),
        ({"block_size": 4}, "block"),
        ({"skip_background": 1.5}, "1.5"),
        ({"tile_size": 30, "overlap": 30}, "overlap"),
        ({"axes": "xy"}, "xy"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_options_raise_tilesr_errors(models, lr, kwargs, match):
    with pytest.raises(TilesrError, match=match):
        restore(da.from_array(lr), models["analytic1"], RestoreOptions(**kwargs))


def test_bad_models_raise_tilesr_errors(tmp_path, lr):
    with pytest.raises(TilesrError, match="metadata"):
        restore(da.from_array(lr), model_without_metadata(tmp_path / "a.onnx"))
    with pytest.raises(TilesrError, match="rank"):
        restore(da.from_array(lr), model_with_wrong_rank(tmp_path / "b.onnx"))
    with pytest.raises(TilesrError, match="not found"):
        restore(da.from_array(lr), tmp_path / "missing.onnx")
    with pytest.raises(TilesrError, match="dimensions"):
        restore(da.from_array(lr[0]), tmp_path / "missing.onnx")


@pytest.mark.parametrize("shape", [(10, 12), (1, 5), (2, 40)])
def test_images_smaller_than_a_tile(models, shape):
    # the canvas is padded to a whole tile by reflection; the image part is still exact
    small = np.random.default_rng(2).uniform(0, 100, shape).astype(np.float32)
    intensity = IntensityRange(0.0, 100.0)
    res = restore(
        da.from_array(small),
        models["analytic2"],
        RestoreOptions(samples=2, steps=STEPS, seed=5),
        intensity_range=intensity,
    )
    ref, _ = _untiled(models["analytic2"], small, samples=2, intensity=intensity)
    assert res.image.shape == (2 * shape[0], 2 * shape[1])
    assert np.array_equal(res.image.compute(), ref)


def test_block_tiles_add_up(models, lr):
    res = restore(
        da.from_array(np.stack([lr, lr])),
        models["spatial1"],
        RestoreOptions(steps=1, block_size=32),
    )
    assert set(res.block_tiles) == {(p, i, j) for p in range(2) for i in range(3) for j in range(3)}
    assert sum(res.block_tiles.values()) == res.tiles


@pytest.mark.parametrize("fuse", ["step", "final"])
def test_strength_is_applied_like_untiled_sampling(models, lr, fuse):
    # a start below T-1 (SDEdit) goes through the same initial state tiled and untiled
    res = restore(
        da.from_array(lr, chunks=(23, 31)),
        models["analytic1"],
        RestoreOptions(samples=2, steps=STEPS, seed=5, block_size=40, fuse=fuse, strength=0.4),
    )
    assert res.plan.options.strength == 0.4
    den = OnnxDenoiser(models["analytic1"])
    intensity = percentile_range(lr, den.metadata.norm_low, den.metadata.norm_high)
    cond = conditioning(lr, 1, intensity)
    s = make_sampler("dpmpp", build_schedule(den.metadata.schedule))
    ref = sample(den, cond, s, n_samples=2, steps=STEPS, seed=5, strength=0.4)
    assert np.array_equal(res.image.compute(), intensity.denormalize(ref.mean))


def test_bad_strength_is_refused_before_any_work(models, lr):
    with pytest.raises(TilesrError, match="strength"):
        restore(da.from_array(lr), models["analytic1"], RestoreOptions(strength=1.5))


def test_block_tasks_read_their_own_chunks_from_a_file(models, lr, tmp_path):
    import zarr

    from tilesr.engine.restore import _chunk_reader

    store = zarr.open_array(
        tmp_path / "lr.zarr", mode="w", shape=lr.shape, chunks=(16, 16), dtype=lr.dtype
    )
    store[:] = lr
    on_disk = da.from_zarr(zarr.open_array(tmp_path / "lr.zarr", mode="r"), inline_array=True)
    options = RestoreOptions(samples=1, steps=2, block_size=40)
    intensity = IntensityRange(100.0, 1100.0)
    read = restore(on_disk, models["analytic1"], options, intensity_range=intensity)
    from dask.diagnostics import Profiler

    with Profiler() as ran:
        image = read.image.compute(scheduler="threads")
    # every chunk read happens inside the block tasks: no input chunk waits in memory for
    # the other blocks that read it
    assert {r.key[0] for r in ran.results if isinstance(r.key, tuple)} == {read.image.name}
    # an input computed from other tasks keeps shared chunk keys (its tasks run once)
    derived = on_disk + 0
    assert _chunk_reader(derived)((derived.name, 0, 0)) == (derived.name, 0, 0)
    shared = restore(derived, models["analytic1"], options, intensity_range=intensity)
    in_memory = restore(
        da.from_array(lr, chunks=16), models["analytic1"], options, intensity_range=intensity
    )
    for other in (shared, in_memory):  # the same pixels whichever way the chunks travel
        assert np.array_equal(image, other.image.compute())
