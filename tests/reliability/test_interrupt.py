"""Ctrl-C (SIGINT) on ``tilesr restore``: one line of truth and exit status 130.

On a real cluster (a ``dask scheduler`` and workers started as processes), locally, and
after the output was already finished (then the run succeeded, and says so).
"""

from __future__ import annotations

import signal
import time

import pytest
import zarr

from tests.cluster import dask_cluster
from tests.reliability.conftest import assert_same_output, run_cli, spawn_cli, write_tiff
from tilesr.io.faults import WAIT_AT_ENV, WAIT_FOR_ENV

pytestmark = pytest.mark.slow

ARGS = ["--samples", "2", "--steps", "6", "--sampler", "ddim", "--block-size", "64"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, models):
    root = tmp_path_factory.mktemp("interrupt")
    src = write_tiff(root / "in.tif", (136, 150))
    ref = root / "ref" / "out.zarr"
    code, output = run_cli("restore", src, ref, "--model", models["spatial2"], *ARGS)
    assert code == 0, output
    return root, src, ref, models["spatial2"]


def _interrupt(proc):
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out.decode(), err.decode()


def _assert_interrupted_cleanly(code, err, out_path):
    assert code == 130, err
    for noise in ("Traceback", "Task exception was never retrieved", "AllExit"):
        assert noise not in err, err
    last = err.strip().splitlines()[-1]
    assert last == f"Error: interrupted; {out_path} is not finished (continue it with --resume)"
    status = zarr.open_group(str(out_path), mode="r").attrs["tilesr"]["status"]
    assert status == "incomplete"


# long enough that SIGINT lands while blocks are in flight, on however fast a machine
CLUSTER_ARGS = [*ARGS[:2], "--steps", "40", *ARGS[4:]]


def test_ctrl_c_on_a_cluster_exits_cleanly_and_resumes(setup, tmp_path):
    _, src, _, model = setup
    ref, out = tmp_path / "ref" / "out.zarr", tmp_path / "out.zarr"  # same name: same NGFF name
    code, output = run_cli("restore", src, ref, "--model", model, *CLUSTER_ARGS)
    assert code == 0, output
    with dask_cluster(tmp_path / "workers") as address:
        proc = spawn_cli(
            "restore", src, out, "--model", model, "--scheduler", address, *CLUSTER_ARGS
        )
        done, deadline = out / ".tilesr" / "done", time.monotonic() + 120
        while not (done.is_dir() and sum(1 for _ in done.iterdir()) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        code, _, err = _interrupt(proc)
        _assert_interrupted_cleanly(code, err, out)
        code, output = run_cli(
            "restore",
            src,
            out,
            "--model",
            model,
            "--scheduler",
            address,
            "--resume",
            *CLUSTER_ARGS,
        )
    assert code == 0, output
    assert_same_output(out, ref)


def _held(src, out, model, phase, tmp_path):
    """A local run stopped at ``phase`` of the writer (which runs in its main thread)."""
    release = tmp_path / "release"
    env = {WAIT_AT_ENV: phase, WAIT_FOR_ENV: str(release)}
    proc = spawn_cli("restore", src, out, "--model", model, *ARGS, env=env)
    deadline = time.monotonic() + 120
    while not (tmp_path / "release.reached").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    return proc


def test_ctrl_c_before_the_output_is_finished_says_so(setup, tmp_path):
    _, src, _, model = setup
    out = tmp_path / "out.zarr"
    code, _, err = _interrupt(_held(src, out, model, "blocks-done", tmp_path))
    _assert_interrupted_cleanly(code, err, out)


def test_ctrl_c_after_the_output_is_finished_is_no_interruption(setup, tmp_path):
    _, src, ref, model = setup
    out = tmp_path / "out.zarr"
    code, stdout, err = _interrupt(_held(src, out, model, "metadata", tmp_path))
    assert code == 0, err
    assert "interrupted" not in err + stdout
    assert stdout.startswith("restored ") and "block(s) written" in stdout
    assert_same_output(out, ref)
