"""Progress bars fed from inside dask tasks, on any scheduler: tilesr's one progress mechanism.

A :class:`Progress` is handed explicitly to the tasks that do the work (the engine's
block tasks through the plan, the one-shot writer's chunk tasks); a task takes a
:meth:`Progress.reporter` and calls it with the amount done (a fraction of a tile after
each network batch, so the bar moves during long blocks). The bar counts whole units
(network evaluations for the engine). Where the amount goes depends on where the task
runs:

* in this process (the threaded or synchronous scheduler): straight to the bar that
  :meth:`Progress.shown` opened;
* in a ``distributed`` worker: as a cluster event on the Progress's own topic
  (``Worker.log_event``, throttled), which :meth:`Progress.shown` receives through the
  active client.

This replaces per-task dask callbacks (``dask.callbacks.Callback`` only sees local
schedulers; ``distributed.progress`` needs futures and counts tasks, not tiles).
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

_FLUSH_SECONDS = 0.5
#: without a terminal, a progress line every this many percent of the total...
LINE_PERCENT = 5
#: ...or every this many seconds, whichever comes first
LINE_SECONDS = 30.0


class Reporter(Protocol):
    """What a task calls: ``report(amount)`` as work is done, ``report.flush()`` at its end."""

    def __call__(self, amount: float) -> None: ...

    def flush(self) -> None: ...


class Progress:
    """A progress bar that tasks update wherever they run.

    Parameters
    ----------
    unit, desc
        What the bar counts (singular, e.g. ``network evaluation``) and its label.

    Tasks report amounts (the engine: tiles, in fractions after each network batch);
    the bar counts whole units, ``scale`` units per reported amount (the engine's bar
    counts network evaluations: samples x steps per tile), so it never shows a fraction.
    On a terminal it is a tqdm bar with an ETA; elsewhere (a batch job's log file) a
    plain line every 5 % or 30 s.
    """

    def __init__(self, *, unit: str = "tile", desc: str = "restoring") -> None:
        self.unit, self.desc = unit, desc
        self.topic = f"tilesr-progress-{uuid.uuid4().hex}"
        self._bar: Any = None
        self._lock = threading.Lock()
        self._scale, self._reported = 1.0, 0.0

    def __getstate__(self) -> dict[str, Any]:
        # a task on a cluster worker reports by event; the bar stays in this process
        return {"unit": self.unit, "desc": self.desc, "topic": self.topic}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _bar=None, _lock=threading.Lock())
        self._scale, self._reported = 1.0, 0.0

    @property
    def done(self) -> int:
        """The whole units the open bar shows (0 when none is open)."""
        return int(self._bar.n) if self._bar is not None else 0

    def update(self, amount: float) -> None:
        """Add ``amount`` to the bar shown in this process (e.g. work found already done)."""
        with self._lock:
            if self._bar is None:
                return
            self._reported += amount
            # reports add up to whole units but for float rounding: count the nearest
            units = min(round(self._reported * self._scale), int(self._bar.total))
            if units > self._bar.n:
                self._bar.update(units - self._bar.n)

    def reporter(self) -> Reporter:
        """A reporter for one task: direct in this process, throttled events on a worker."""
        worker = _current_worker()
        return _EventReporter(worker, self.topic) if worker is not None else _LocalReporter(self)

    @contextmanager
    def shown(self, total: float, *, scale: float = 1.0) -> Iterator[Progress]:
        """Show a bar over ``total`` reported amounts (``total * scale`` units) in the block."""
        client = _current_client()
        units = round(total * scale)
        with _open_bar(units, self.unit, self.desc) as bar:
            if client is not None:

                def handler(event: Any) -> None:
                    self.update(float(event[1].get("amount", 0.0)))

                client.subscribe_topic(self.topic, handler)
            self._bar, self._scale, self._reported = bar, scale, 0.0
            try:
                yield self
            finally:
                self._bar = None
                if client is not None:
                    client.unsubscribe_topic(self.topic)


def _open_bar(total: int, unit: str, desc: str) -> Any:
    """A tqdm bar on a terminal, plain lines on anything else."""
    if _is_terminal(sys.stderr):
        from tqdm.auto import tqdm

        return tqdm(total=total, unit=f" {unit}s", desc=desc, dynamic_ncols=True, file=sys.stderr)
    return LineBar(total, unit=unit, desc=desc)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class LineBar:
    """Progress as plain lines (for logs): every :data:`LINE_PERCENT` of the total or
    :data:`LINE_SECONDS`, whichever comes first, and once at the end."""

    def __init__(self, total: int, *, unit: str, desc: str) -> None:
        self.total, self.n = max(0, int(total)), 0
        self.unit, self.desc = unit, desc
        self._start = self._last_time = time.monotonic()
        self._last_step = 0

    def __enter__(self) -> LineBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.total and self.n >= self.total and self._last_step < self._step(self.total):
            self._print()

    def update(self, amount: int) -> None:
        self.n += int(amount)
        now = time.monotonic()
        step = self._step(self.n)
        if step > self._last_step or now - self._last_time >= LINE_SECONDS:
            self._last_step, self._last_time = step, now
            self._print()

    def _step(self, n: int) -> int:
        return (100 * n) // (LINE_PERCENT * self.total) if self.total else 0

    def _print(self) -> None:
        elapsed = time.monotonic() - self._start
        percent = 100 * self.n / self.total if self.total else 100.0
        line = f"{self.desc} {percent:3.0f}% ({self.n}/{self.total} {self.unit}s), "
        if self.n >= self.total:
            line += f"done in {_clock(elapsed)}"
        elif self.n:
            left = elapsed * (self.total - self.n) / self.n
            line += f"{_clock(elapsed)} elapsed, about {_clock(left)} left"
        else:
            line += f"{_clock(elapsed)} elapsed"
        print(line, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


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
