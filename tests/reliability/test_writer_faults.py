"""Crashes at each phase of the resumable writer, in process (fast); see test_process_kill."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

from tests.reliability.conftest import assert_same_output
from tilesr.errors import TilesrError
from tilesr.io import faults, open_image
from tilesr.io.faults import FAULT_PHASES
from tilesr.io.restored import output_state, write_restored


class Crash(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way handles it."""


def _image():
    # 300 x 280 in blocks of 64: 25 blocks and a two-level pyramid
    values = np.random.default_rng(3).normal(100, 20, (300, 280)).astype(np.float32)
    return da.from_array(values, chunks=64)


def _write(out, image, *, resume=False):
    state = output_state(out, {"k": 1}, resume=resume)
    return write_restored(
        out, image, image * 0.1, state=state, axes="yx", fingerprint={"k": 1}, provenance={"p": 2}
    )


@pytest.mark.parametrize("phase", FAULT_PHASES)
def test_crash_at_each_phase_then_resume(tmp_path, monkeypatch, phase):
    image = _image()
    _write(tmp_path / "ref" / "out.zarr", image)

    def fault(name):
        if name == phase:
            raise Crash(name)

    monkeypatch.setattr(faults, "fault_point", fault)
    out = tmp_path / "run" / "out.zarr"
    with pytest.raises(Crash):
        _write(out, image)
    monkeypatch.undo()

    attrs = zarr.open_group(str(out), mode="r").attrs.asdict()
    if phase != "metadata":
        assert attrs["tilesr"]["status"] == "incomplete"
        assert "ome" not in attrs
        with pytest.raises(TilesrError):
            open_image(out)
    with pytest.raises(TilesrError, match="--resume"):
        _write(out, image)
    _write(out, image, resume=True)
    assert_same_output(out, tmp_path / "ref" / "out.zarr")
