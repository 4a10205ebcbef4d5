"""Progress bars fed from inside dask tasks, on any scheduler: tilesr's one progress mechanism.

A :class:`Progress` is handed explicitly to the tasks that do the work (the engine's
block tasks through the plan, the one-shot writer's chunk tasks); a task takes a
:meth:`Progress.reporter` and calls it with the amount done (a fraction of a tile after
each network batch, so the bar moves during long blocks). Where the amount goes depends
on where the task runs:

* in this process (the threaded or synchronous scheduler): straight to the bar that
  :meth:`Progress.shown` opened;
* in a ``distributed`` worker: as a cluster event on the Progress's own topic
  (``Worker.log_event``, throttled), which :meth:`Progress.shown` receives through the
  active client.

This replaces per-task dask callbacks (``dask.callbacks.Callback`` only sees local
schedulers; ``distributed.progress`` needs futures and counts tasks, not tiles).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

_FLUSH_SECONDS = 0.5


class Reporter(Protocol):
    """What a task calls: ``report(amount)`` as work is done, ``report.flush()`` at its end."""

    def __call__(self, amount: float) -> None: ...

    def flush(self) -> None: ...


class Progress:
    """A progress bar that tasks update wherever they run.

    Parameters
    ----------
    unit, desc
        The bar's unit and label (``tile``/``restoring`` for the engine).
    """

    def __init__(self, *, unit: str = "tile", desc: str = "restoring") -> None:
        self.unit, self.desc = unit, desc
        self.topic = f"tilesr-progress-{uuid.uuid4().hex}"
        self._bar: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # a task on a cluster worker reports by event; the bar stays in this process
        return {"unit": self.unit, "desc": self.desc, "topic": self.topic}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _bar=None, _lock=threading.Lock())

    @property
    def done(self) -> float:
        """The amount the open bar shows (0 when none is open)."""
        return float(self._bar.n) if self._bar is not None else 0.0

    def update(self, amount: float) -> None:
        """Add ``amount`` to the bar shown in this process (e.g. work found already done)."""
        with self._lock:
            if self._bar is not None:
                self._bar.update(amount)

    def reporter(self) -> Reporter:
        """A reporter for one task: direct in this process, throttled events on a worker."""
        worker = _current_worker()
        return _EventReporter(worker, self.topic) if worker is not None else _LocalReporter(self)

    @contextmanager
    def shown(self, total: float) -> Iterator[Progress]:
        """Show a tqdm bar over ``total`` while the block is open."""
        from tqdm.auto import tqdm

        client = _current_client()
        with tqdm(total=total, unit=self.unit, desc=self.desc, dynamic_ncols=True) as bar:
            if client is not None:

                def handler(event: Any) -> None:
                    self.update(float(event[1].get("amount", 0.0)))

                client.subscribe_topic(self.topic, handler)
            self._bar = bar
            try:
                yield self
            finally:
                self._bar = None
                if client is not None:
                    client.unsubscribe_topic(self.topic)


class _LocalReporter:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def __call__(self, amount: float) -> None:
        self._progress.update(amount)

    def flush(self) -> None:
        return None


class _EventReporter:
    """Accumulates a task's amounts and sends them as cluster events every half second."""

    def __init__(self, worker: Any, topic: str) -> None:
        self._worker, self._topic = worker, topic
        self._pending = 0.0
        self._last = time.monotonic()

    def __call__(self, amount: float) -> None:
        self._pending += amount
        if time.monotonic() - self._last >= _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._worker.log_event(self._topic, {"amount": self._pending})
            self._pending = 0.0
            self._last = time.monotonic()


def reporter_of(progress: Progress | None) -> Reporter:
    """``progress.reporter()``, or one that reports nowhere."""
    return progress.reporter() if progress is not None else _Nowhere()


class _Nowhere:
    def __call__(self, amount: float) -> None:
        return None

    def flush(self) -> None:
        return None


def _current_worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _current_client() -> Any:
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None
