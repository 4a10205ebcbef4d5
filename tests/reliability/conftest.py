"""Reliability test helpers: small inputs, digests, CLI runs (the models: tests/conftest.py)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile
import zarr
from click.testing import CliRunner

from tilesr.cli import main

#: options of every restore here: few steps, small blocks (many blocks to kill between)
FAST = ["--steps", "2", "--sampler", "ddim", "--block-size", "64", "--no-progress"]


def write_tiff(path: Path, shape: tuple[int, ...] = (136, 150), seed: int = 0) -> Path:
    """A uint16 test image with structure (not only noise), as a plain TIFF."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    base = 1000 + 800 * np.sin(yy / 7.0) * np.cos(xx / 5.0)
    data = base + rng.normal(0, 50, shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = "ZYX" if len(shape) == 3 else "YX"
    tifffile.imwrite(
        path,
        np.clip(data, 0, 65535).astype(np.uint16),
        photometric="minisblack",
        metadata={"axes": axes},
    )
    return path


def tree_digest(path: Path) -> dict[str, tuple[int, int, str]]:
    """(size, mtime_ns, sha256) of every file under ``path`` (or of ``path`` itself)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    out = {}
    for f in files:
        st = f.stat()
        out[str(f.relative_to(path.parent))] = (
            st.st_size,
            st.st_mtime_ns,
            hashlib.sha256(f.read_bytes()).hexdigest(),
        )
    return out


def read_store(path: Path) -> dict[str, np.ndarray]:
    """Every array of a restored output, by its path in the store."""
    group = zarr.open_group(str(path), mode="r")
    return {name: np.asarray(arr[...]) for name, arr in group.arrays()}


def assert_same_output(got: Path, ref: Path) -> None:
    """Bit-identical arrays and identical attributes; no leftover resume markers."""
    a, b = read_store(got), read_store(ref)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    ga, gb = zarr.open_group(str(got), mode="r"), zarr.open_group(str(ref), mode="r")
    assert dict(ga.attrs) == dict(gb.attrs)
    assert not (got / ".tilesr").exists()


def run_cli(*args: object) -> tuple[int, str]:
    """``tilesr ...`` in this process; (exit code, output)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: let the test show it
    return result.exit_code, result.output


def assert_one_line_error(code: int, output: str, *needles: str) -> None:
    assert code != 0
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def spawn_cli(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``python -m tilesr ...`` as a child process (to be killed or interrupted).

    SIGINT is reset to its default in the child: an ignored signal is inherited across
    exec, and Python installs its KeyboardInterrupt handler only where SIGINT is not
    ignored, so a test run whose process ignores SIGINT (some libraries set that) would
    make Ctrl-C tests meaningless.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "tilesr", *map(str, args)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def local_cluster(distributed):
    """A LocalCluster of two single-threaded worker processes, quiet, no dashboard."""
    return distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=50
    )
