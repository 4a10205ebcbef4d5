"""Give freed canvases back to the operating system (glibc's malloc keeps them otherwise).

A block task allocates and frees canvas-sized arrays (tens of MB) at every step. glibc
serves an allocation above its mmap threshold with its own mapping, returned on free,
but raises that threshold to the size of each such array freed (up to 32 MB), after
which canvases come from the heap and stay there, fragmented, after the block is done:
the process's resident memory then grows with the number of blocks restored, not with
the size of one block (measured: tools/bench_engine.py, memory). Fixing the thresholds
(as dask.distributed's nanny does for its workers with ``MALLOC_TRIM_THRESHOLD_``) keeps
the resident memory at what the current block needs. Tile batches (half a MB) stay
below the mmap threshold, so the network's per-call allocations are not affected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

#: mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: arrays of at least this many bytes get their own mapping (returned when freed)
MMAP_THRESHOLD = 1 << 20
#: free memory at the top of the heap above this is returned at once
TRIM_THRESHOLD = 1 << 16


@functools.cache
def return_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds in this process (once); False where not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(ok)
