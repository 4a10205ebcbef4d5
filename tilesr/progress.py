"""A tqdm progress bar counting restored tiles, fed from inside the block tasks.

Block tasks call :func:`tile_reporter` and report each network batch as a fraction of
a tile (a tile counts as done when all its samples have been through every step), so
the bar moves during long blocks instead of once per block. Where the report goes
depends on where the task runs:

* the local threaded (or synchronous) scheduler: tasks run in this process and update
  the bars opened by :func:`progress_context` directly;
* a ``distributed`` cluster: tasks run in worker processes and send their counts as
  cluster events (``Worker.log_event``, throttled); :func:`progress_context`
  subscribes to them through the active client.

This replaces per-task dask callbacks (``dask.callbacks.Callback`` only sees local
schedulers; ``distributed.progress`` needs futures and counts tasks, not tiles).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EVENT_TOPIC = "tilesr-progress"
_FLUSH_SECONDS = 0.5

_BARS: list[Any] = []
_BARS_LOCK = threading.Lock()


def _local_update(amount: float) -> None:
    with _BARS_LOCK:
        for bar in _BARS:
            bar.update(amount)


def _current_worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


class _Reporter:
    """Accumulates tile counts in a task and forwards them (throttled on a cluster)."""

    def __init__(self) -> None:
        self._worker = _current_worker()
        self._pending = 0.0
        self._last = time.monotonic()

    def __call__(self, amount: float) -> None:
        if self._worker is None:
            _local_update(amount)
            return
        self._pending += amount
        if time.monotonic() - self._last >= _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._worker is not None and self._pending:
            self._worker.log_event(EVENT_TOPIC, {"tiles": self._pending})
            self._pending = 0.0
            self._last = time.monotonic()


def tile_reporter() -> _Reporter:
    """A callable ``report(tiles: float)`` for one block task; call ``.flush()`` at its end."""
    return _Reporter()


def _current_client() -> Any:
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


@contextmanager
def progress_context(
    total_tiles: float, enabled: bool = True, *, desc: str = "restoring"
) -> Iterator[Any]:
    """Show a tqdm bar over ``total_tiles`` tiles (with tiles/s) while the block is open.

    Parameters
    ----------
    total_tiles
        Tiles to restore, e.g. ``RestoreResult.settings["tiles"]`` (summed over the
        arrays computed inside the block).
    enabled
        False: do nothing (for ``--no-progress`` and tests).
    desc
        Label of the bar.

    Yields
    ------
    tqdm or None
        The bar (``bar.update(tiles)`` accounts for work done elsewhere, e.g. blocks
        a resumed run skips), or None when disabled.
    """
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total_tiles, unit="tile", desc=desc, dynamic_ncols=True)
    client = _current_client()
    handler = None
    if client is not None:

        def handler(event: Any) -> None:
            _, message = event
            bar.update(float(message.get("tiles", 0.0)))

        client.subscribe_topic(EVENT_TOPIC, handler)
    with _BARS_LOCK:
        _BARS.append(bar)
    try:
        yield bar
    finally:
        with _BARS_LOCK:
            _BARS.remove(bar)
        if client is not None:
            client.unsubscribe_topic(EVENT_TOPIC)
        bar.close()
