"""Soak: many small restorations at once on one LocalCluster; memory and handles stay flat.

Prints the resident memory and open file descriptors of this process and of the
workers after a warm-up round and at the end (``pytest -s`` shows them).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import dask
import numpy as np
import psutil
import pytest

from tests.reliability.conftest import local_cluster, read_store, write_tiff
from tilesr.engine.restore import restore
from tilesr.io import open_image
from tilesr.io.restored import output_state, write_restored
from tilesr.options import RestoreOptions

pytestmark = pytest.mark.slow

DISTINCT = 4  # different images; each is restored again and again
MIN_ROUNDS, MAX_ROUNDS = 6, 60
SOAK_SECONDS = 45  # rounds continue until this much time has passed (bounded by MAX_ROUNDS)
PER_ROUND = 8  # restorations in flight at once
OPTIONS = {"samples": 2, "steps": 2, "sampler": "ddim", "block_size": 48, "uncertainty": True}


def _restore_one(src, out, model) -> None:
    image = open_image(src)
    result = restore(image.data, str(model), RestoreOptions(axes=image.axes, **OPTIONS))
    fingerprint = {"src": str(src)}
    state = output_state(out, fingerprint)
    write_restored(
        out, result.image, result.uncertainty, state=state, axes=image.axes, fingerprint=fingerprint
    )


def _usage(pid: int) -> tuple[float, int]:
    proc = psutil.Process(pid)
    return proc.memory_info().rss / 2**20, proc.num_fds()


def test_many_concurrent_restorations_stay_flat(tmp_path, models):
    distributed = pytest.importorskip("distributed")
    model = models["analytic2"]
    sources = [
        write_tiff(tmp_path / "in" / f"{i}.tif", (40 + 3 * i, 52), seed=i) for i in range(DISTINCT)
    ]
    with dask.config.set(scheduler="threads"):
        for i, src in enumerate(sources):
            _restore_one(src, tmp_path / "ref" / f"{i}.zarr", model)
    refs = [read_store(tmp_path / "ref" / f"{i}.zarr") for i in range(DISTINCT)]

    with (
        local_cluster(distributed) as cluster,
        distributed.Client(cluster) as client,
        ThreadPoolExecutor(PER_ROUND) as pool,
    ):

        def workers() -> list[tuple[float, int]]:
            return [_usage(pid) for pid in client.run(os.getpid).values()]

        samples = []
        started = time.monotonic()
        r = 0
        while r < MIN_ROUNDS or (time.monotonic() - started < SOAK_SECONDS and r < MAX_ROUNDS):
            jobs = [(k % DISTINCT, tmp_path / "out" / f"{r}-{k}.zarr") for k in range(PER_ROUND)]
            futures = [pool.submit(_restore_one, sources[i], out, model) for i, out in jobs]
            for f in futures:
                f.result(timeout=300)
            for i, out in jobs:
                got = read_store(out)
                assert sorted(got) == sorted(refs[i])
                for key in got:
                    np.testing.assert_array_equal(got[key], refs[i][key], err_msg=str(out))
            samples.append((_usage(os.getpid()), workers()))
            r += 1
        seconds = time.monotonic() - started

    # the first round warms up (imports, ORT sessions, caches, comm pools); after it a
    # leak of anything per restoration would grow with every round, so compare the peak
    # of the first and of the last third of the rounds (comm pools come and go a little)
    third = max(1, len(samples) // 3)
    client = [c for c, _ in samples[1:]]
    per_worker = list(zip(*(w for _, w in samples[1:]), strict=True))
    print(
        f"\nsoak: {r * PER_ROUND} restorations in {seconds:.0f} s over {r} rounds; client RSS "
        f"{client[0][0]:.0f} -> {client[-1][0]:.0f} MiB, fds {[c[1] for c in client]}; "
        + "; ".join(
            f"worker RSS {w[0][0]:.0f} -> {w[-1][0]:.0f} MiB, fds {w[0][1]} -> {w[-1][1]}"
            for w in per_worker
        )
    )
    for name, series in [
        ("client", client),
        *((f"worker {i}", w) for i, w in enumerate(per_worker)),
    ]:
        early = series[:third]
        late = series[-third:]
        rss_growth = max(x[0] for x in late) - max(x[0] for x in early)
        fd_growth = max(x[1] for x in late) - max(x[1] for x in early)
        assert rss_growth < 64, f"{name}: memory grows round after round ({rss_growth:.0f} MiB)"
        assert fd_growth <= 4, f"{name}: file descriptors grow round after round ({fd_growth})"
