"""One writer per output: a claim file beside it, taken atomically, kept fresh by a heartbeat.

``tilesr restore`` claims its output before deciding what to do with it, and holds the
claim until it returns; a second run on the same output refuses at once, naming the
holder (host, pid, start time). The claim is ``OUT.tilesr-claim``, a small JSON file
created by ``os.link`` of a private temporary file, which is atomic on local and network
file systems (NFS included, where ``flock`` is not dependable); where hard links are not
supported, ``O_CREAT | O_EXCL`` instead. A claim left by a process that died (SIGKILL, a
lost node) does not block forever: on the same host it is stale as soon as its process
is gone (or its pid was reused); from another host when its heartbeat (the file's
modification time, touched every :data:`HEARTBEAT_SECONDS`) is older than
:data:`STALE_AFTER_SECONDS`. A stale claim is removed under a second, short-lived claim
(``OUT.tilesr-claim.break``), so two runs that find it stale at once cannot both win.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from tilesr.errors import TilesrError

CLAIM_SUFFIX = ".tilesr-claim"
#: how often the holder touches its claim
HEARTBEAT_SECONDS = 10.0
#: a claim from another host untouched this long is stale (well above any clock skew)
STALE_AFTER_SECONDS = 120.0
_ATTEMPTS = 5
_log = logging.getLogger("tilesr")


@dataclass(frozen=True)
class Holder:
    """Who holds a claim."""

    host: str
    pid: int
    started: str  # ISO 8601, local time with offset
    process_started: float | None  # the process' own start time, to tell a reused pid
    token: str

    @classmethod
    def this_process(cls) -> Holder:
        return cls(
            socket.gethostname(),
            os.getpid(),
            datetime.now().astimezone().isoformat(timespec="seconds"),
            _process_start(os.getpid()),
            uuid.uuid4().hex,
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.started}"


def claim_path(out: Path) -> Path:
    """The claim file of an output."""
    return out.with_name(out.name + CLAIM_SUFFIX)


@contextmanager
def claimed(out: Path) -> Iterator[Holder]:
    """Hold the claim on ``out`` for the block; refuse at once when another live run has it."""
    path = claim_path(out)
    mine = take_claim(out)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, mine, stop), daemon=True)
    beat.start()
    try:
        yield mine
    finally:
        stop.set()
        beat.join()
        if _read(path) == mine:  # never remove a claim another run took over
            with suppress(FileNotFoundError):
                path.unlink()


def take_claim(out: Path) -> Holder:
    """Claim ``out`` for this process (breaking a stale claim), or raise naming the holder."""
    path = claim_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = Holder.this_process()
    for _ in range(_ATTEMPTS):
        if _create(path, mine):
            return mine
        holder = _read(path)
        if holder is None:
            if _age(path) < STALE_AFTER_SECONDS:
                time.sleep(0.2)  # being written, or just removed: look again
                continue
            holder = _UNREADABLE
        elif is_alive(holder, path):
            raise TilesrError(
                f"{out} is being written by {holder.describe()}; wait for it to finish "
                f"(a claim left by a crashed run clears itself; it is {path})"
            )
        _break(path, holder)
    raise TilesrError(f"cannot claim {out}: {path} keeps changing; is another tilesr starting?")


def is_alive(holder: Holder, path: Path) -> bool:
    """Whether the run holding a claim may still be running."""
    if holder.host != socket.gethostname():
        return _age(path) < STALE_AFTER_SECONDS
    started = _process_start(holder.pid)
    if started is None:
        return False  # no such process on this host
    if math.isnan(started) or holder.process_started is None:
        return True  # it exists, and nothing tells it from the holder
    # a pid the system reused for another process does not keep the claim
    return abs(started - holder.process_started) < 1.0


_UNREADABLE = Holder("?", -1, "?", None, "unreadable")


def _create(path: Path, holder: Holder) -> bool:
    """Create the claim file atomically with ``holder``'s record; False if it exists."""
    text = json.dumps(asdict(holder))
    private = path.with_name(f"{path.name}.{holder.host}.{holder.pid}.{holder.token}")
    private.write_text(text)
    try:
        os.link(private, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        return _create_exclusive(path, text)
    finally:
        private.unlink(missing_ok=True)


def _create_exclusive(path: Path, text: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return True


def _read(path: Path) -> Holder | None:
    """The holder a claim file names; None when it is gone or not (yet) readable."""
    try:
        record = json.loads(path.read_text())
        return Holder(**record)
    except (OSError, ValueError, TypeError):
        return None


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _break(path: Path, stale: Holder) -> None:
    """Remove a stale claim, unless another run replaced it meanwhile (under a break claim)."""
    breaker = path.with_name(path.name + ".break")
    if _age(breaker) > STALE_AFTER_SECONDS:  # left by a run killed while breaking
        breaker.unlink(missing_ok=True)
    mine = Holder.this_process()
    if not _create(breaker, mine):
        time.sleep(0.2)  # another run is breaking it: look again
        return
    try:
        current = _read(path)  # looked at again under the break claim
        if current == stale or (stale is _UNREADABLE and current is None):
            _log.info(f"removing the stale claim {path} ({stale.describe()})")
            path.unlink(missing_ok=True)
    finally:
        breaker.unlink(missing_ok=True)


def _heartbeat(path: Path, holder: Holder, stop: threading.Event) -> None:
    """Touch the claim every HEARTBEAT_SECONDS while it is ours."""
    while not stop.wait(HEARTBEAT_SECONDS):
        if _read(path) != holder:
            _log.warning(f"the claim {path} is no longer this run's; another run may write too")
            return
        with suppress(OSError):
            os.utime(path)


def _process_start(pid: int) -> float | None:
    """When process ``pid`` of this host started: None if there is none (or only its
    zombie), NaN when it exists but its start time is not ours to read."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return math.nan
