"""The whole ``tilesr restore`` process SIGKILLed at many points; ``--resume`` finishes it.

Phase kills use the writer's fault points (``TILESR_TEST_KILL_AT``, see
``tilesr/io/restored.py``); the others kill at chosen numbers of finished blocks
(polling the done markers) and at random times. After every kill the output must be
recognisably incomplete (or already complete, for a kill after the final metadata),
be refused without ``--resume``, and be finished by ``--resume`` into exactly the
fault-free output.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
import zarr

from tests.reliability.conftest import (
    FAST,
    assert_one_line_error,
    assert_same_output,
    run_cli,
    spawn_cli,
    tree_digest,
    write_tiff,
)
from tilesr.errors import TilesrError
from tilesr.io import open_image
from tilesr.io.faults import FAULT_PHASES, KILL_AT_ENV

pytestmark = pytest.mark.slow

ARGS = ["--samples", "2", *FAST]  # two samples: uncertainty channels too


@pytest.fixture(scope="module")
def setup(tmp_path_factory, models):
    root = tmp_path_factory.mktemp("kill")
    # 136 x 150 LR -> 272 x 300 HR: 25 blocks of 64 and a two-level pyramid
    src = write_tiff(root / "in.tif", (136, 150))
    ref = root / "ref" / "out.zarr"
    code, output = run_cli("restore", src, ref, "--model", models["spatial2"], *ARGS)
    assert code == 0, output
    assert len(zarr.open_group(str(ref), mode="r").attrs["ome"]["multiscales"][0]["datasets"]) == 2
    return root, src, ref, models["spatial2"]


def _check_killed_then_resume(root, src, ref, model, out, digest):
    """The checks after a kill: incomplete, refused, resumed to the reference."""
    if out.exists():
        meta = zarr.open_group(str(out), mode="r").attrs.asdict()
        status = meta.get("tilesr", {}).get("status")
        if status != "complete":
            assert status == "incomplete"
            assert "ome" not in meta and "multiscales" not in meta  # not an image yet
            with pytest.raises(TilesrError):
                open_image(out)  # readers do not take it for a finished image
        code, output = run_cli("restore", src, out, "--model", model, *ARGS)
        assert_one_line_error(code, output, "--resume")
    code, output = run_cli("restore", src, out, "--model", model, "--resume", *ARGS)
    assert code == 0, output
    assert_same_output(out, ref)
    assert tree_digest(src) == digest  # the input is never touched


@pytest.mark.parametrize("phase", FAULT_PHASES)
def test_kill_at_each_writer_phase_then_resume(setup, phase):
    root, src, ref, model = setup
    digest = tree_digest(src)
    out = root / f"phase-{phase}" / "out.zarr"
    proc = spawn_cli("restore", src, out, "--model", model, *ARGS, env={KILL_AT_ENV: phase})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"phase {phase} was never reached"
    assert out.exists()
    _check_killed_then_resume(root, src, ref, model, out, digest)


def _kill_when(proc, condition, timeout=120.0):
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < timeout:
        if condition():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.communicate(timeout=60)


@pytest.mark.parametrize("blocks", [1, 13])
def test_kill_after_some_blocks_then_resume(setup, blocks):
    root, src, ref, model = setup
    digest = tree_digest(src)
    out = root / f"blocks-{blocks}" / "out.zarr"
    done = out / ".tilesr" / "done"

    def enough() -> bool:
        try:
            return sum(1 for _ in done.iterdir()) >= blocks
        except FileNotFoundError:
            return False

    proc = spawn_cli("restore", src, out, "--model", model, *ARGS)
    _kill_when(proc, enough)
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill"
    markers = sum(1 for _ in done.iterdir())
    assert blocks <= markers < 25
    _check_killed_then_resume(root, src, ref, model, out, digest)


def test_kill_at_random_times_then_resume(setup):
    root, src, ref, model = setup
    digest = tree_digest(src)
    rng = np.random.default_rng(2024)
    # python start-up and imports take most of the first seconds: spread over the run
    for i, delay in enumerate(rng.uniform(0.5, 6.0, size=2)):
        out = root / f"random-{i}" / "out.zarr"
        proc = spawn_cli("restore", src, out, "--model", model, *ARGS)
        deadline = time.monotonic() + delay
        _kill_when(proc, lambda deadline=deadline: time.monotonic() >= deadline)
        _check_killed_then_resume(root, src, ref, model, out, digest)
