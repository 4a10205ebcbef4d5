"""A dask worker process SIGKILLed mid-restore: the run completes, bit for bit as without."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.reliability.conftest import assert_same_output, local_cluster, tree_digest, write_tiff
from tilesr.options import RestoreOptions
from tilesr.restore_file import restore_file

pytestmark = pytest.mark.slow

OPTIONS = RestoreOptions(samples=2, steps=4, sampler="ddim", block_size=64)


def test_worker_killed_mid_restore_is_survived(tmp_path, models):
    distributed = pytest.importorskip("distributed")
    src = write_tiff(tmp_path / "in.tif", (136, 150))
    digest = tree_digest(src)
    model = models["spatial2"]
    ref = tmp_path / "ref" / "out.zarr"
    restore_file(src, ref, OPTIONS, model=model, progress=False)  # fault-free, local threads

    out = tmp_path / "run" / "out.zarr"
    done = out / ".tilesr" / "done"
    killed: list[int] = []
    with (
        local_cluster(distributed) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = client.run(os.getpid)

        def killer() -> None:
            # wait until blocks are being written, then kill the worker of one of them
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if done.is_dir() and sum(1 for _ in done.iterdir()) >= 3:
                    pid = sorted(pids.values())[0]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.005)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        address = cluster.scheduler_address
        report = restore_file(src, out, OPTIONS, model=model, scheduler=address, progress=False)
        thread.join(timeout=5)
        assert killed, "the run finished before a worker could be killed"
        # the nanny brought a fresh worker process in place of the killed one
        assert killed[0] not in client.run(os.getpid).values()

    assert report.chunks_written == report.chunks_total
    assert_same_output(out, ref)
    assert tree_digest(src) == digest


def test_a_cluster_that_gives_up_is_one_line_and_resumable(tmp_path, models):
    # with no retries allowed, a worker killed mid-task makes dask raise KilledWorker:
    # one line saying the output is unfinished, then --resume completes it bit for bit
    distributed = pytest.importorskip("distributed")
    import dask

    from tilesr.errors import TilesrError

    src = write_tiff(tmp_path / "in.tif", (200, 220))
    model = models["spatial2"]
    ref = tmp_path / "ref" / "out.zarr"
    restore_file(src, ref, OPTIONS, model=model, progress=False)

    out = tmp_path / "run" / "out.zarr"
    done = out / ".tilesr" / "done"
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        local_cluster(distributed) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = list(client.run(os.getpid).values())

        def killer() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if done.is_dir() and sum(1 for _ in done.iterdir()) >= 2:
                    for pid in pids:  # both: whichever holds a running task
                        os.kill(pid, signal.SIGKILL)
                    return
                time.sleep(0.005)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        address = cluster.scheduler_address
        with pytest.raises(TilesrError, match=r"gave up on a block.*--resume"):
            restore_file(src, out, OPTIONS, model=model, scheduler=address, progress=False)
        thread.join(timeout=5)

    report = restore_file(src, out, OPTIONS, model=model, resume=True, progress=False)
    assert 0 < report.chunks_written < report.chunks_total
    assert_same_output(out, ref)
