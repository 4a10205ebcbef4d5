"""Disk full and read-only output: one-line errors, the input untouched, nothing lost."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import zarr.storage

from tests.reliability.conftest import (
    FAST,
    assert_one_line_error,
    assert_same_output,
    run_cli,
    tree_digest,
    write_tiff,
)


@pytest.fixture
def src(tmp_path):
    return write_tiff(tmp_path / "in" / "in.tif", (60, 70))


def _failing_store(monkeypatch, code: int, *, after: int, prefix: str = "") -> list[int]:
    """Make zarr's LocalStore raise OSError(code) on every write after the first ``after``."""
    original = zarr.storage.LocalStore.set
    count = [0]

    async def set_(self, key, value, *args, **kwargs):
        if key.startswith(prefix):
            count[0] += 1
            if count[0] > after:
                raise OSError(code, os.strerror(code), str(Path(str(self.root)) / key))
        return await original(self, key, value, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", set_)
    return count


@pytest.mark.parametrize("after", [0, 5])
def test_disk_full_is_one_line_and_resumable(tmp_path, src, models, monkeypatch, after):
    """ENOSPC while writing chunks: a clear error; after freeing space --resume finishes."""
    args = ["--model", models["analytic2"], "--samples", "2", *FAST]
    ref = tmp_path / "ref" / "out.zarr"
    assert run_cli("restore", src, ref, *args)[0] == 0
    digest = tree_digest(src)

    out = tmp_path / "run" / "out.zarr"
    _failing_store(monkeypatch, errno.ENOSPC, after=after, prefix="0/c")
    code, output = run_cli("restore", src, out, *args)
    assert_one_line_error(code, output, "No space left on device", str(out))
    monkeypatch.undo()
    assert tree_digest(src) == digest

    code, output = run_cli("restore", src, out, "--resume", *args)
    assert code == 0, output
    assert_same_output(out, ref)  # no byte lost
    assert tree_digest(src) == digest


def test_read_only_store_is_one_line(tmp_path, src, models, monkeypatch):
    """EROFS on the very first write (the group's metadata)."""
    _failing_store(monkeypatch, errno.EROFS, after=0)
    digest = tree_digest(src)
    code, output = run_cli(
        "restore", src, tmp_path / "o.zarr", "--model", models["analytic2"], *FAST
    )
    assert_one_line_error(code, output, "Read-only file system")
    assert tree_digest(src) == digest


def _read_only_dir(tmp_path: Path) -> Path:
    """A folder this process cannot create anything in (root ignores permission bits)."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    # root: sysfs refuses new entries to everyone
    ro = Path("/sys/kernel")
    if not ro.is_dir():
        pytest.skip("no read-only location for root on this system")
    return ro


def test_read_only_folder_is_one_line(tmp_path, src, models):
    digest = tree_digest(src)
    ro = _read_only_dir(tmp_path)
    try:
        out = ro / "tilesr-reliability-out.zarr"
        code, output = run_cli("restore", src, out, "--model", models["analytic2"], *FAST)
        assert_one_line_error(code, output, str(out))
        assert not out.exists()
    finally:
        if ro.is_relative_to(tmp_path):
            ro.chmod(0o755)
    assert tree_digest(src) == digest
