"""Two ``tilesr restore`` processes on one output: the second refuses at once, naming the
first; a claim left by a SIGKILLed writer does not block ``--resume``."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from tests.reliability.conftest import (
    FAST,
    assert_one_line_error,
    assert_same_output,
    run_cli,
    spawn_cli,
    write_tiff,
)
from tilesr.io.claim import claim_path
from tilesr.io.faults import WAIT_AT_ENV, WAIT_FOR_ENV

pytestmark = pytest.mark.slow

ARGS = ["--samples", "2", *FAST]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, models):
    root = tmp_path_factory.mktemp("one_writer")
    src = write_tiff(root / "in.tif", (136, 150))
    ref = root / "ref" / "out.zarr"
    code, output = run_cli("restore", src, ref, "--model", models["spatial2"], *ARGS)
    assert code == 0, output
    return src, ref, models["spatial2"]


def _held_writer(src, out, model, flags, tmp_path):
    """A writer process stopped after its first block is written; (process, release file)."""
    release = tmp_path / "release"
    env = {WAIT_AT_ENV: "block", WAIT_FOR_ENV: str(release)}
    proc = spawn_cli("restore", src, out, "--model", model, *flags, *ARGS, env=env)
    reached = tmp_path / "release.reached"
    deadline = time.monotonic() + 120
    while not reached.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer never reached its first block"
        time.sleep(0.05)
    return proc, release


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ([], ["--resume"]),
        (["--resume"], ["--overwrite"]),
        (["--overwrite"], ["--overwrite"]),
        (["--overwrite"], ["--resume"]),
    ],
)
def test_a_second_writer_refuses_at_once_and_the_first_finishes(setup, tmp_path, first, second):
    src, ref, model = setup
    out = tmp_path / "out.zarr"
    proc, release = _held_writer(src, out, model, first, tmp_path)
    try:
        started = time.monotonic()
        code, output = run_cli("restore", src, out, "--model", model, *second, *ARGS)
        assert time.monotonic() - started < 30
        assert_one_line_error(code, output, "being written by", f"pid {proc.pid}")
        assert socket.gethostname() in output and "since 20" in output
        assert out.exists()  # --overwrite did not delete the first writer's output
    finally:
        release.touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert_same_output(out, ref)
    assert not claim_path(out).exists()


def test_a_sigkilled_holder_does_not_block_resume(setup, tmp_path):
    src, ref, model = setup
    out = tmp_path / "out.zarr"
    proc, _ = _held_writer(src, out, model, [], tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert claim_path(out).exists()  # left behind, naming a process that is gone
    code, output = run_cli("restore", src, out, "--model", model, "--resume", *ARGS)
    assert code == 0, output
    assert_same_output(out, ref)
    assert not claim_path(out).exists()
