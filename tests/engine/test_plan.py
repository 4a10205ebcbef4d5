"""make_plan: RestoreOptions resolved once against the model; what the output records."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace

import numpy as np
import pytest

from tests.onnx_models import analytic_model, regression_model
from tests.onnx_models import test_metadata as small_metadata
from tilesr.denoisers import onnx_backend
from tilesr.denoisers.onnx_backend import OnnxDenoiser
from tilesr.engine.model import EngineModel, open_model
from tilesr.engine.plan import BIT_NEUTRAL, make_plan
from tilesr.errors import TilesrError
from tilesr.options import RestoreOptions

ONE_THREAD = RestoreOptions(threads=1)


def test_defaults_are_filled_in_from_the_model(models):
    model = open_model(models["analytic2"], ONE_THREAD)
    plan = make_plan(RestoreOptions(samples=3), model, (40, 50))
    meta = model.metadata
    o = plan.options
    assert (o.steps, o.sampler, o.strength) == (meta.steps, meta.sampler, meta.strength)
    assert (o.tile_size, o.overlap) == (meta.tile_size, meta.overlap)
    assert o.samples == 3 and o.uncertainty is True  # more than one sample
    assert o.block_size % (meta.tile_size - meta.overlap) == 0
    assert o.axes == "yx" and o.threads == 1 and o.batch_size == 8
    assert plan.context == meta.tile_size  # fused: one tile around each block
    assert make_plan(RestoreOptions(fuse="final"), model, (40, 50)).context == 0


def test_a_block_context_smaller_than_a_tile(models, tmp_path):
    model = open_model(models["spatial2"], ONE_THREAD)  # tile 32, overlap 8: stride 24
    shape = (120, 120)  # 240 HR pixels: blocks of 48 px
    full = make_plan(RestoreOptions(block_size=48), model, shape)
    part = make_plan(RestoreOptions(block_size=48, context=8), model, shape)
    assert (full.context, part.context) == (32, 8)
    assert part.record()["context"] == 8 and part.record() != full.record()
    counts = {c: block_tiles(model, shape, c) for c in (0, 8, 17, 25, 41)}
    for context, found in counts.items():
        # every tile of the global grid that comes within ``context`` px of the block
        assert found == brute_force_tiles(shape, 2, 32, 8, 48, context)
    totals = [sum(counts[c].values()) for c in (0, 8, 17, 25, 41)]
    assert totals == sorted(set(totals))  # each of these contexts adds tiles
    with pytest.raises(TilesrError, match="context applies to fuse='step' only"):
        make_plan(RestoreOptions(fuse="final", context=8), model, shape)
    with pytest.raises(TilesrError, match="context must be an integer of at least 0"):
        RestoreOptions(context=-1)
    # the uncertainty is pooled on the canvas: the context must hold what the pooling reads
    meta = replace(small_metadata(), uncertainty_pool=2.0)
    pooled = open_model(analytic_model(tmp_path / "p.onnx", metadata=meta), ONE_THREAD)
    with pytest.raises(TilesrError, match="at least the 8 px the uncertainty's pooling and"):
        make_plan(RestoreOptions(samples=2, context=4), pooled, shape)
    assert make_plan(RestoreOptions(samples=1, context=4), pooled, shape).context == 4
    # so must it hold what the data consistency reads: scale 1 x (4 sigma + 2) input pixels
    with pytest.raises(TilesrError, match="at least the 6 px"):
        make_plan(RestoreOptions(samples=1, context=4, consistency=1.0), pooled, shape)
    with pytest.raises(TilesrError, match="consistency reads beyond a block"):
        make_plan(RestoreOptions(fuse="final", consistency=1.0), pooled, shape)


def test_the_model_can_declare_its_block_context(tmp_path):
    shape = (120, 120)
    meta = replace(small_metadata(), context=16, uncertainty_pool=2.0)  # pooling reads 8 px
    model = open_model(analytic_model(tmp_path / "c.onnx", metadata=meta), ONE_THREAD)
    assert model.metadata.context == 16  # survives the file's metadata round trip
    assert make_plan(RestoreOptions(), model, shape).context == 16
    assert make_plan(RestoreOptions(context=40), model, shape).context == 40  # option wins
    assert make_plan(RestoreOptions(fuse="final"), model, shape).context == 0
    # a default below the pooling's reach is raised to it, not refused
    low = replace(meta, context=2)
    lowered = open_model(analytic_model(tmp_path / "l.onnx", metadata=low), ONE_THREAD)
    assert make_plan(RestoreOptions(samples=2), lowered, shape).context == 8
    assert make_plan(RestoreOptions(samples=1), lowered, shape).context == 2
    # a file without the key restores as before: one tile
    assert (
        make_plan(
            RestoreOptions(),
            open_model(analytic_model(tmp_path / "o.onnx", metadata=small_metadata()), ONE_THREAD),
            shape,
        ).context
        == small_metadata().tile_size
    )
    with pytest.raises(TilesrError, match="context must be in"):
        replace(meta, context=-1)


def block_tiles(model, shape, context):
    import dask.array as da

    from tilesr.data.normalize import IntensityRange
    from tilesr.engine import restore

    lr = da.zeros(shape, dtype=np.float32)
    options = RestoreOptions(block_size=48, context=context)
    return dict(restore(lr, model, options, intensity_range=IntensityRange(0, 1)).block_tiles)


def brute_force_tiles(shape, scale, tile, overlap, block, context):
    from tilesr.engine.tiling import block_spans, tile_grid

    hr = (shape[0] * scale, shape[1] * scale)
    tiles = tile_grid(hr, tile, overlap)
    out = {}
    for i, by in enumerate(block_spans(hr[0], block)):
        for j, bx in enumerate(block_spans(hr[1], block)):
            near = [
                t
                for t in tiles
                if t.outer[0].start < by.stop + context
                and by.start - context < t.outer[0].stop
                and t.outer[1].start < bx.stop + context
                and bx.start - context < t.outer[1].stop
            ]
            out[(i, j)] = len(near)
    return out


def test_the_record_is_json_and_leaves_out_only_what_never_changes_a_bit(models):
    model = open_model(models["analytic2"], ONE_THREAD)
    plan = make_plan(RestoreOptions(seed=4), model, (3, 40, 50))
    record = plan.record()
    assert json.loads(json.dumps(record)) == record
    assert record["axes"] == "zyx" and record["provider"] == "CPUExecutionProvider"
    fields = {f.name for f in dataclasses.fields(RestoreOptions)}
    assert fields - set(record) == set(BIT_NEUTRAL)
    faster = make_plan(RestoreOptions(seed=4, batch_size=3, threads=2), model, (3, 40, 50))
    assert faster.record() == plan.record()


def test_the_default_batch_follows_the_provider_that_runs(models):
    cpu = open_model(models["analytic2"], ONE_THREAD)
    on_gpu = replace(cpu, provider="CUDAExecutionProvider")
    assert make_plan(RestoreOptions(), cpu, (40, 50)).batch_size == 8
    assert make_plan(RestoreOptions(), on_gpu, (40, 50)).batch_size == 32
    assert make_plan(RestoreOptions(batch_size=5), on_gpu, (40, 50)).batch_size == 5
    # a Denoiser that is not an ONNX Runtime session: no provider, the CPU default
    other = open_model(OnnxDenoiser(models["analytic2"]))
    assert other.provider is None and other.default_batch_size() == 8


def test_geometry_is_checked_against_the_network(models):
    model = open_model(models["spatial2"], ONE_THREAD)  # size multiple 8
    with pytest.raises(TilesrError, match="multiple of 8 for this network, got 36"):
        make_plan(RestoreOptions(tile_size=36), model, (40, 50))
    with pytest.raises(TilesrError, match="overlap must be smaller than the tile size"):
        make_plan(RestoreOptions(overlap=32), model, (40, 50))
    # the limit counts blocks (graph entries), not tiles: a 10^12-pixel input is planned
    # with the default blocks, and refused when its blocks would be too many
    assert make_plan(RestoreOptions(), model, (10**6, 10**6)).block_size == 2040
    with pytest.raises(TilesrError, match=r"too large for one restoration: .* blocks of 64 px"):
        make_plan(RestoreOptions(block_size=64), model, (10**6, 10**6))
    with pytest.raises(TilesrError, match="axes 'yx' name 2 dimensions"):
        make_plan(RestoreOptions(axes="yx"), model, (2, 40, 50))


def test_a_regression_model_takes_its_own_sampling(tmp_path):
    model = open_model(regression_model(tmp_path / "r.onnx"), ONE_THREAD)
    plan = make_plan(RestoreOptions(), model, (40, 50))
    assert (plan.options.samples, plan.options.steps, plan.options.sampler) == (1, 1, "ddim")
    assert plan.options.uncertainty is False
    with pytest.raises(TilesrError, match=r"regression model.*steps 4 do not apply"):
        make_plan(RestoreOptions(steps=4), model, (40, 50))
    with pytest.raises(TilesrError, match=r"regression model.*sample noise 'antithetic'"):
        make_plan(RestoreOptions(sample_noise="antithetic"), model, (40, 50))


def test_the_model_declares_its_sample_noise_and_the_option_wins(tmp_path):
    meta = replace(small_metadata(), sample_noise="antithetic")
    model = open_model(analytic_model(tmp_path / "a.onnx", metadata=meta), ONE_THREAD)
    assert make_plan(RestoreOptions(), model, (40, 50)).options.sample_noise == "antithetic"
    chosen = make_plan(RestoreOptions(sample_noise="independent"), model, (40, 50))
    assert chosen.options.sample_noise == "independent"
    assert chosen.record()["sample_noise"] == "independent"  # recorded: it changes the output
    old = open_model(analytic_model(tmp_path / "o.onnx", metadata=small_metadata()), ONE_THREAD)
    assert make_plan(RestoreOptions(), old, (40, 50)).options.sample_noise == "independent"


def test_restore_file_opens_the_model_once(tmp_path, models, monkeypatch):
    import tifffile

    from tilesr.restore_file import restore_file

    sessions = []
    new_session = onnx_backend._new_session
    monkeypatch.setattr(onnx_backend, "_CACHE", {})
    monkeypatch.setattr(
        onnx_backend, "_new_session", lambda *a: sessions.append(a[1:]) or new_session(*a)
    )
    tifffile.imwrite(tmp_path / "in.tif", np.ones((20, 24), np.float32))
    options = RestoreOptions(steps=1)
    restore_file(tmp_path / "in.tif", tmp_path / "o.zarr", options, model=models["analytic2"])
    assert len(sessions) == 1, sessions


def test_an_opened_model_is_passed_through(models):
    model = open_model(models["analytic2"], ONE_THREAD)
    assert open_model(model, RestoreOptions(threads=4)) is model
    assert isinstance(model, EngineModel) and len(model.file_sha256 or "") == 64
