"""Run a call under a wall-clock limit and a traced-memory limit (hostile-input tests)."""

from __future__ import annotations

import signal
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Hang(Exception):
    """The call ran past its time limit."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """SIGALRM after ``seconds``: a hang fails the test instead of stalling the suite."""

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def bounded(fn: Callable[[], Any], *, seconds: int = 20, max_mb: float = 256.0) -> Any:
    """``fn()`` within ``seconds`` and ``max_mb`` of traced allocations (NumPy's included).

    Returns what ``fn`` returns, or re-raises what it raised; a Hang or an
    AssertionError about the memory peak otherwise.
    """
    tracemalloc.start()
    try:
        with time_limit(seconds):
            return fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < max_mb * 1e6, f"allocated {peak / 1e6:.0f} MB (limit {max_mb} MB)"
