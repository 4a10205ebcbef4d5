"""Scheduler setup, progress reporting, and bit-identical results on a real cluster."""

from __future__ import annotations

import time

import dask
import dask.array as da
import numpy as np
import pytest

from tilesr.engine import restore
from tilesr.engine.scheduling import scheduler_context, threads_per_worker, worker_threads
from tilesr.errors import TilesrError
from tilesr.options import RestoreOptions
from tilesr.progress import Progress


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(11)
    return (rng.gamma(2.0, 100.0, (50, 61))).astype(np.float32)


def test_threads_times_workers_fit_the_cores():
    assert threads_per_worker(4, cores=16) == 4
    assert threads_per_worker(3, cores=2) == 1
    assert threads_per_worker(1, cores=2) == 2
    with pytest.raises(TilesrError, match="workers"):
        threads_per_worker(0, cores=4)


def test_default_context_is_the_threaded_scheduler():
    with scheduler_context(workers=2) as info:
        assert info.kind == "threads" and info.workers == 2
        assert dask.config.get("scheduler") == "threads"
        assert dask.config.get("num_workers") == 2
        assert worker_threads(workers=2) == info.threads_per_worker


@pytest.mark.parametrize(
    "address,match", [("local-cluster:x", "local-cluster"), ("local-cluster:0", "positive")]
)
def test_bad_local_cluster_spec(address, match):
    with pytest.raises(TilesrError, match=match), scheduler_context(address):
        pass


def test_unreachable_scheduler_is_named():
    with (
        pytest.raises(TilesrError, match=r"127\.0\.0\.1:1"),
        scheduler_context("tcp://127.0.0.1:1", connect_timeout=0.5),
    ):
        pass


def test_worker_threads_says_what_the_context_will_set_up():
    assert worker_threads("local-cluster:2") == threads_per_worker(2)
    assert worker_threads("tcp://host:8786") == 1  # remote workers bring their own cores
    with pytest.raises(TilesrError, match="local-cluster"):
        worker_threads("local-cluster:x")


def test_progress_counts_every_tile_on_the_threaded_scheduler(models, image):
    progress = Progress()
    options = RestoreOptions(steps=2, block_size=32)
    res = restore(da.from_array(image), models["spatial1"], options, progress=progress)
    with scheduler_context(workers=2), progress.shown(res.tiles):
        res.image.compute()
        assert progress.done == pytest.approx(res.tiles)


def test_without_progress_the_tasks_report_nowhere(models, image):
    res = restore(da.from_array(image), models["spatial1"], RestoreOptions(steps=2))
    assert res.plan.progress is None
    res.image.compute()  # nothing to report to, and nothing fails


def test_two_bars_count_their_own_restorations(models, image):
    # no bar is global: each restoration reports to the Progress it was given
    first, second = Progress(), Progress()
    a = restore(image, models["analytic1"], RestoreOptions(steps=1), progress=first)
    b = restore(image[:20], models["analytic1"], RestoreOptions(steps=1), progress=second)
    with first.shown(a.tiles), second.shown(b.tiles):
        a.image.compute()
        assert first.done == pytest.approx(a.tiles) and second.done == 0
        b.image.compute()
        assert second.done == pytest.approx(b.tiles)


@pytest.fixture(scope="module")
def cluster():
    # one LocalCluster of two worker processes for the module: slow to start
    with scheduler_context("local-cluster:2") as info:
        yield info


def test_local_cluster_gives_identical_bits(models, image, cluster):
    assert cluster.kind == "local-cluster" and cluster.workers == 2
    progress = Progress()
    res = restore(
        da.from_array(image, chunks=(20, 20)),
        models["spatial2"],
        RestoreOptions(
            steps=2, samples=2, block_size=40, uncertainty=True, threads=cluster.threads_per_worker
        ),
        progress=progress,
    )
    threaded = dask.compute(res.image, res.uncertainty, scheduler="threads")
    with progress.shown(res.tiles):
        # the tiles computed in this process above were reported before the bar opened
        on_cluster = dask.compute(res.image, res.uncertainty)  # the default client
        deadline = time.monotonic() + 5
        while progress.done < res.tiles - 1e-6 and time.monotonic() < deadline:
            time.sleep(0.1)  # the last progress events may still be on their way
        assert progress.done == pytest.approx(res.tiles)
    for a, b in zip(threaded, on_cluster, strict=True):
        assert np.array_equal(a, b)
