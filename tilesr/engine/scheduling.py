"""Where block tasks run: the local threaded scheduler or a dask.distributed cluster.

ONNX Runtime parallelises inside each network call (intra-op threads) and dask runs
several blocks at once (workers); the two are sized together so that workers x
threads is about the number of cores, instead of each block grabbing every core.

Note: with zarr 3, ``dask.array.to_zarr(..., scheduler=...)`` fails; everything here
sets the scheduler through ``dask.config.set`` (or a default ``Client``) instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from tilesr.errors import TilesrError

LOCAL_CLUSTER_PREFIX = "local-cluster:"


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks and cgroup pinning)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_workers(cores: int | None = None) -> int:
    """Blocks restored at once on the local scheduler: about one per 4 cores."""
    cores = cores or available_cores()
    # ORT scales well to ~4 threads per call on conv nets; beyond that more blocks in
    # parallel use the cores better (at the price of one canvas in memory each)
    return max(1, cores // 4)


def threads_per_worker(workers: int, *, cores: int | None = None) -> int:
    """ONNX Runtime intra-op threads per worker so that workers x threads ~ cores.

    Parameters
    ----------
    workers
        Concurrent block tasks.
    cores
        Cores to share (default: those available to this process).
    """
    if workers < 1:
        raise TilesrError(f"number of workers must be positive, got {workers}")
    return max(1, (cores or available_cores()) // workers)


def worker_threads(address: str | None = None, *, workers: int | None = None) -> int:
    """ONNX Runtime threads per block task on the scheduler ``address`` names; starts nothing.

    What :func:`scheduler_context` will report as ``threads_per_worker`` (the same
    arguments), so a model can be opened with it before the scheduler is set up.
    """
    if address is None:
        return threads_per_worker(workers or default_workers())
    if address.startswith(LOCAL_CLUSTER_PREFIX):
        return threads_per_worker(_parse_local_cluster(address))
    return 1  # remote workers have their own cores; one ORT thread per dask thread there


@dataclass(frozen=True)
class SchedulerInfo:
    """What :func:`scheduler_context` set up."""

    kind: str  # "threads", "local-cluster" or "distributed"
    workers: int
    threads_per_worker: int
    address: str | None = None
    client: Any = None


def _parse_local_cluster(address: str) -> int:
    count = address[len(LOCAL_CLUSTER_PREFIX) :]
    try:
        n = int(count)
    except ValueError:
        raise TilesrError(
            f"scheduler {address!r}: expected 'local-cluster:N' with an integer N"
        ) from None
    if n < 1:
        raise TilesrError(f"scheduler {address!r}: the number of workers must be positive")
    return n


@contextmanager
def scheduler_context(
    address: str | None = None,
    *,
    workers: int | None = None,
    connect_timeout: float = 5.0,
) -> Iterator[SchedulerInfo]:
    """Run dask computations inside the block on the chosen scheduler.

    Parameters
    ----------
    address
        None: the local threaded scheduler. ``"local-cluster:N"``: start a
        ``distributed.LocalCluster`` of N single-threaded worker processes for the
        duration of the block. Anything else: the address of a running dask scheduler
        (e.g. ``tcp://host:8786``).
    workers
        Threaded scheduler only: concurrent block tasks (default: about cores / 4).
    connect_timeout
        Seconds to wait for a remote scheduler before giving up.

    Yields
    ------
    SchedulerInfo
        ``info.threads_per_worker`` is :func:`worker_threads` of the same arguments.
    """
    with ExitStack() as stack:
        if address is None:
            yield _threads(stack, workers)
        elif address.startswith(LOCAL_CLUSTER_PREFIX):
            yield _local_cluster(stack, address)
        else:
            yield _remote(stack, address, connect_timeout)


def _threads(stack: ExitStack, workers: int | None) -> SchedulerInfo:
    import dask

    n = workers or default_workers()
    threads = threads_per_worker(n)  # refuses n < 1
    stack.enter_context(dask.config.set(scheduler="threads", num_workers=n))
    return SchedulerInfo("threads", n, threads)


def _local_cluster(stack: ExitStack, address: str) -> SchedulerInfo:
    from distributed import Client, LocalCluster

    n = _parse_local_cluster(address)
    cluster = stack.enter_context(
        LocalCluster(
            n_workers=n,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=40,
        )
    )
    client = stack.enter_context(Client(cluster, set_as_default=True))
    _quiet_cancelled_gathers(client)
    threads = worker_threads(address)
    return SchedulerInfo("local-cluster", n, threads, cluster.scheduler_address, client)


def _remote(stack: ExitStack, address: str, connect_timeout: float) -> SchedulerInfo:
    from distributed import Client

    try:
        client = Client(address, timeout=connect_timeout, set_as_default=True)
    except (OSError, TimeoutError, ValueError) as exc:
        raise TilesrError(
            f"cannot reach the dask scheduler at {address!r} ({type(exc).__name__})"
        ) from None
    stack.enter_context(client)
    _quiet_cancelled_gathers(client)
    n = max(1, len(client.scheduler_info().get("workers", {})))
    return SchedulerInfo("distributed", n, worker_threads(address), address, client)


def _quiet_cancelled_gathers(client: Any) -> None:
    """Keep an interrupt (Ctrl-C) on a cluster from printing an asyncio traceback.

    An interrupt cancels the run's futures; distributed's gather leaves behind tasks that
    end in its internal ``AllExit``, which nobody retrieves, and asyncio would print each
    as "Task exception was never retrieved". Anything else still reaches the handler the
    client's event loop had.
    """
    from distributed.client import AllExit

    loop = client.loop.asyncio_loop
    previous = loop.get_exception_handler()

    def handler(loop: Any, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), AllExit):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
