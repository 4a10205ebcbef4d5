"""Fault injection for ``tests/reliability`` (see docs/reliability.md).

The resumable writer calls :func:`fault_point` at each of its phase boundaries; when the
environment variable ``TILESR_TEST_KILL_AT`` names the phase, the process SIGKILLs
itself there, as a power cut would; ``TILESR_TEST_WAIT_AT`` holds it there instead until
a test lets it go on. Unset, a fault point costs two dict lookups.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

KILL_AT_ENV = "TILESR_TEST_KILL_AT"
#: the process stops at this phase until the file ``TILESR_TEST_WAIT_FOR`` names exists
#: (it first creates that name + ".reached"): a test holds a writer mid-run
WAIT_AT_ENV = "TILESR_TEST_WAIT_AT"
WAIT_FOR_ENV = "TILESR_TEST_WAIT_FOR"
_WAIT_LIMIT = 300.0
#: the writer's phases, in order: after the group is created, after the arrays are
#: created, after a block's pixels (before its marker), after all blocks, after the
#: pyramid (before the final metadata), after the final metadata
FAULT_PHASES = ("group", "levels", "block", "blocks-done", "pyramid", "metadata")


def fault_point(phase: str) -> None:
    """SIGKILL this process if ``TILESR_TEST_KILL_AT`` names ``phase``; wait there if
    ``TILESR_TEST_WAIT_AT`` does."""
    if os.environ.get(KILL_AT_ENV) == phase:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(WAIT_AT_ENV) == phase:
        release = Path(os.environ[WAIT_FOR_ENV])
        release.with_name(release.name + ".reached").touch()
        deadline = time.monotonic() + _WAIT_LIMIT
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
