"""Fault injection for ``tests/reliability`` (see docs/reliability.md).

The resumable writer calls :func:`fault_point` at each of its phase boundaries; when the
environment variable ``TILESR_TEST_KILL_AT`` names the phase, the process SIGKILLs
itself there, as a power cut would. Unset, a fault point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "TILESR_TEST_KILL_AT"
#: the writer's phases, in order: after the group is created, after the arrays are
#: created, after a block's pixels (before its marker), after all blocks, after the
#: pyramid (before the final metadata), after the final metadata
FAULT_PHASES = ("group", "levels", "block", "blocks-done", "pyramid", "metadata")


def fault_point(phase: str) -> None:
    """SIGKILL this process if ``TILESR_TEST_KILL_AT`` names ``phase``."""
    if os.environ.get(KILL_AT_ENV) == phase:
        os.kill(os.getpid(), signal.SIGKILL)
