"""write_restored on plain dask arrays: layout, one task per block, crash and resume."""

from __future__ import annotations

import threading
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from tilesr.errors import TilesrError
from tilesr.io import open_image, open_restored
from tilesr.io import restored as restored_mod
from tilesr.io.restored import OutputState, output_state, write_restored

SHAPE = (2, 300, 270)  # two pyramid levels
CHUNKS = (1, 128, 128)


class _Counter:
    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, block, block_info=None):
        with self.lock:
            self.calls += 1
        # mean and "std" of a block from one task, stacked like the engine's output
        return np.stack([block * 3.0 + 0.25, np.abs(block) * 0.1]).astype(np.float32)


def _restored(counter):
    """image and uncertainty sharing one task per block, as RestoreResult provides."""
    base = da.random.default_rng(7).standard_normal(SHAPE, chunks=CHUNKS).astype(np.float32) * 40
    both = base.map_blocks(counter, new_axis=0, chunks=((2,), *base.chunks), dtype=np.float32)
    return both[0], both[1]


def _write(path, image, unc, *, overwrite=False, resume=False, **kwargs):
    """Decide with output_state, then write, as restore_file does."""
    options = {
        "axes": "zyx",
        "pixel_sizes": {"z": 1.0, "y": 0.05, "x": 0.05},
        "units": {"y": "micrometer", "x": "micrometer"},
        "fingerprint": {"seed": 0, "model_file_sha256": "abc"},
        "provenance": {"model": "m.onnx"},
    }
    options.update(kwargs)
    state = output_state(path, options["fingerprint"], overwrite=overwrite, resume=resume)
    return write_restored(path, image, unc, state=state, **options)


def test_layout_provenance_and_one_task_per_block(tmp_path):
    counter = _Counter()
    image, unc = _restored(counter)
    expected_img, expected_unc = (a.compute() for a in (image, unc))
    counter.calls = 0
    report = _write(tmp_path / "out.zarr", image, unc)
    blocks = int(np.prod(image.numblocks))
    assert counter.calls == blocks  # image and uncertainty of a block come from one task
    assert (report.chunks_total, report.chunks_written, report.chunks_skipped) == (
        blocks,
        blocks,
        0,
    )

    group = zarr.open_group(tmp_path / "out.zarr", mode="r")
    # one image: the restoration and its uncertainty are channels 0 and 1 of a c axis
    assert group["0"].shape == (2, *SHAPE)
    np.testing.assert_array_equal(group["0"][0], expected_img)
    np.testing.assert_array_equal(group["0"][1], expected_unc)
    back = open_restored(tmp_path / "out.zarr")
    assert back.axes == "zyx"
    np.testing.assert_array_equal(np.asarray(back.image), expected_img)
    np.testing.assert_array_equal(np.asarray(back.uncertainty), expected_unc)
    meta = group.attrs["tilesr"]
    assert meta["status"] == "complete"
    assert meta["model"] == "m.onnx"
    assert meta["fingerprint"] == {"seed": 0, "model_file_sha256": "abc"}
    assert not (tmp_path / "out.zarr" / ".tilesr").exists()

    assert meta["layout"]["axes"] == "czyx"
    assert (meta["layout"]["restored"], meta["layout"]["uncertainty"]) == ([0], [1])
    out = open_image(tmp_path / "out.zarr")
    assert out.axes == "czyx"
    assert out.pixel_sizes == pytest.approx({"z": 1.0, "y": 0.05, "x": 0.05})


def test_output_opens_with_ome_zarr_reader(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    image, unc = _restored(_Counter())
    _write(tmp_path / "out.zarr", image, unc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nodes = list(Reader(parse_url(str(tmp_path / "out.zarr")))())
    assert tuple(nodes[0].data[0].shape) == (2, *SHAPE)


def test_input_dtype_is_rounded_and_clipped(tmp_path):
    image = da.from_array(np.array([[-5.2, 3.5], [254.7, 999.0]], np.float32), chunks=1)
    _write(tmp_path / "o.zarr", image, None, axes="yx", dtype=np.uint8)
    stored = zarr.open_group(tmp_path / "o.zarr", mode="r")["0"][:]
    np.testing.assert_array_equal(stored, np.array([[0, 4], [255, 255]], np.uint8))
    assert open_restored(tmp_path / "o.zarr").uncertainty is None


def test_crash_then_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    counter = _Counter()
    image, unc = _restored(counter)
    _write(tmp_path / "ref" / "img.zarr", image, unc)
    total = int(np.prod(image.numblocks))

    original = restored_mod._write_block
    written = []

    def crashing(*args, block_info=None, **kwargs):
        if len(written) >= 5:
            raise RuntimeError("simulated crash")
        written.append(original(*args, block_info=block_info, **kwargs))

    monkeypatch.setattr(restored_mod, "_write_block", crashing)
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="simulated"):
        _write(tmp_path / "run" / "img.zarr", image, unc)
    monkeypatch.setattr(restored_mod, "_write_block", original)

    group = zarr.open_group(tmp_path / "run" / "img.zarr", mode="r")
    assert group.attrs["tilesr"]["status"] == "incomplete"
    # not a finished image: no NGFF metadata yet
    with pytest.raises(TilesrError, match="multiscales"):
        open_image(tmp_path / "run" / "img.zarr")
    with pytest.raises(TilesrError, match="--resume"):
        _write(tmp_path / "run" / "img.zarr", image, unc)

    counter.calls = 0
    report = _write(tmp_path / "run" / "img.zarr", image, unc, resume=True)
    assert (report.chunks_written, report.chunks_skipped) == (total - 5, 5)
    assert counter.calls == total - 5
    ref = zarr.open_group(tmp_path / "ref" / "img.zarr", mode="r")
    out = zarr.open_group(tmp_path / "run" / "img.zarr", mode="r")
    for key in ("0", "1"):
        np.testing.assert_array_equal(out[key][:], ref[key][:])
    assert out.attrs.asdict() == ref.attrs.asdict()


def test_resume_of_complete_output_is_a_no_op(tmp_path):
    counter = _Counter()
    image, unc = _restored(counter)
    _write(tmp_path / "out.zarr", image, unc)
    counter.calls = 0
    report = _write(tmp_path / "out.zarr", image, unc, resume=True)
    assert counter.calls == 0
    assert report.chunks_written == 0
    assert output_state(tmp_path / "out.zarr", {"seed": 0}, resume=True) is OutputState.COMPLETE


def test_resume_with_other_settings_is_refused(tmp_path):
    image, unc = _restored(_Counter())
    _write(tmp_path / "out.zarr", image, unc)
    with pytest.raises(TilesrError, match=r"seed = 0, this run has 1.*--overwrite"):
        _write(tmp_path / "out.zarr", image, unc, resume=True, fingerprint={"seed": 1})


def test_resume_of_a_foreign_store_is_refused(tmp_path):
    zarr.open_group(tmp_path / "other.zarr", mode="w")
    with pytest.raises(TilesrError, match="not a tilesr output"):
        output_state(tmp_path / "other.zarr", {}, resume=True)


def test_overwrite_replaces_only_when_writing(tmp_path):
    image, unc = _restored(_Counter())
    _write(tmp_path / "out.zarr", image, unc)
    # deciding is not deleting
    assert output_state(tmp_path / "out.zarr", {}, overwrite=True) is OutputState.REPLACE
    assert (tmp_path / "out.zarr" / "0").exists()
    with pytest.raises(TilesrError, match="exclude"):
        output_state(tmp_path / "out.zarr", {}, overwrite=True, resume=True)
    small = da.ones((1, 20, 20), chunks=(1, 10, 10), dtype=np.float32)
    _write(tmp_path / "out.zarr", small, None, overwrite=True)
    group = zarr.open_group(tmp_path / "out.zarr", mode="r")
    assert group["0"].shape == (1, 20, 20)
    assert "uncertainty" not in group


def test_a_resumed_output_is_checked_against_the_whole_fingerprint(tmp_path, monkeypatch):
    # output_state sees what is known before any pixel is read; what only the pixels
    # tell (the engine's intensity range) is checked by the writer before it continues
    image, unc = _restored(_Counter())
    monkeypatch.setattr(restored_mod, "_write_block", _crash_after(restored_mod._write_block, 1))
    with pytest.raises(TilesrError, match="simulated"):
        _write(tmp_path / "out.zarr", image, unc, fingerprint={"seed": 0, "range": [0, 1]})
    monkeypatch.undo()
    early = output_state(tmp_path / "out.zarr", {"seed": 0}, resume=True)
    assert early is OutputState.RESUME
    with pytest.raises(TilesrError, match=r"range = \[0, 1\], this run has \[0, 2\]"):
        write_restored(
            tmp_path / "out.zarr",
            image,
            unc,
            state=early,
            axes="zyx",
            fingerprint={"seed": 0, "range": [0, 2]},
        )


def test_an_output_that_appeared_since_the_decision_is_not_overwritten(tmp_path):
    image, unc = _restored(_Counter())
    state = output_state(tmp_path / "out.zarr", {})
    assert state is OutputState.NEW
    (tmp_path / "out.zarr").mkdir()
    (tmp_path / "out.zarr" / "mine.txt").write_text("keep")
    with pytest.raises(TilesrError, match="appeared"):
        write_restored(tmp_path / "out.zarr", image, unc, state=state, axes="zyx", fingerprint={})
    assert (tmp_path / "out.zarr" / "mine.txt").read_text() == "keep"


def _crash_after(write_block, n):
    count, lock = [0], threading.Lock()

    def crashing(*args, block_info=None, **kwargs):
        with lock:
            if count[0] >= n:
                raise TilesrError("simulated crash")
            count[0] += 1
        return write_block(*args, block_info=block_info, **kwargs)

    return crashing
