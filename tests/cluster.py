"""A real dask cluster for tests: ``dask scheduler`` and ``dask worker`` child processes.

Unlike an in-process ``LocalCluster``, these processes have their own working directory
(``cwd``), as workers on other machines do, so a relative path that reaches a worker
points somewhere else. The fixture starts and stops only the processes it made.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _dask_command() -> list[str]:
    """The ``dask`` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("dask")
    if script.exists():
        return [str(script)]
    found = shutil.which("dask")
    if found is None:
        raise RuntimeError("the `dask` command line is not installed")
    return [found]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group this test started, SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


@contextmanager
def dask_cluster(cwd: Path, *, workers: int = 2, timeout: float = 90.0) -> Iterator[str]:
    """Start a scheduler and ``workers`` single-threaded workers in ``cwd``; yield its address."""
    cwd.mkdir(parents=True, exist_ok=True)
    info = cwd / "scheduler.json"
    dask = _dask_command()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    # each child leads its own process group, so stopping it stops its children too
    common = {"cwd": cwd, "start_new_session": True, **quiet}
    procs = [
        subprocess.Popen(
            [
                *dask,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(info),
            ],
            **common,
        )
    ]
    try:
        address = _wait_for_address(info, procs[0], timeout)
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        *dask,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--local-directory",
                        str(cwd / "dask-worker-space"),
                    ],
                    **common,
                )
            )
        _wait_for_workers(address, workers, timeout)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _wait_for_address(info: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {proc.returncode}")
        if info.exists():
            try:
                return str(json.loads(info.read_text())["address"])
            except (ValueError, KeyError):
                pass  # still being written
        time.sleep(0.1)
    raise RuntimeError("dask scheduler did not start")


def _wait_for_workers(address: str, count: int, timeout: float) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(count, timeout=timeout)
