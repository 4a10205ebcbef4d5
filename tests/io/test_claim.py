"""The claim on an output: atomic, exclusive, fresh while held, stale when its holder died."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace

import pytest

from tilesr.errors import TilesrError
from tilesr.io import claim as claim_mod
from tilesr.io.claim import Holder, claim_path, claimed, is_alive, take_claim


def _write_claim(path, holder, *, age=0.0):
    path.write_text(json.dumps(asdict(holder)))
    then = time.time() - age
    os.utime(path, (then, then))


def _dead_holder():
    """The record of a process of this host that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return replace(Holder.this_process(), pid=proc.pid, process_started=1.0)


def test_a_claim_is_exclusive_and_released(tmp_path):
    out = tmp_path / "out.ome.zarr"
    with claimed(out) as mine:
        record = json.loads(claim_path(out).read_text())
        assert (record["pid"], record["host"]) == (os.getpid(), mine.host)
        with pytest.raises(TilesrError, match=rf"being written by pid {os.getpid()} on"):
            take_claim(out)
    assert not claim_path(out).exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary files left


def test_the_refusal_names_host_pid_and_start_time(tmp_path):
    out = tmp_path / "out.ome.zarr"
    holder = replace(
        Holder.this_process(), host="node17", pid=4242, started="2026-01-02T03:04:05+00:00"
    )
    _write_claim(claim_path(out), holder)
    with pytest.raises(TilesrError) as info:
        take_claim(out)
    message = str(info.value)
    assert "pid 4242 on node17, since 2026-01-02T03:04:05+00:00" in message
    assert "\n" not in message


def test_a_claim_of_a_dead_process_is_broken_at_once(tmp_path, caplog):
    caplog.set_level("INFO", logger="tilesr")
    out = tmp_path / "out.ome.zarr"
    _write_claim(claim_path(out), _dead_holder())
    with claimed(out) as mine:
        assert json.loads(claim_path(out).read_text())["token"] == mine.token
    assert "stale claim" in caplog.text


def test_a_reused_pid_does_not_keep_a_claim(tmp_path):
    # this very process, but started at another time: the pid was reused
    holder = replace(Holder.this_process(), process_started=12345.0)
    assert not is_alive(holder, claim_path(tmp_path / "o"))
    assert is_alive(Holder.this_process(), claim_path(tmp_path / "o"))


def test_another_hosts_claim_is_stale_only_without_a_heartbeat(tmp_path):
    out = tmp_path / "out.ome.zarr"
    elsewhere = replace(Holder.this_process(), host="some-other-node", pid=1)
    _write_claim(claim_path(out), elsewhere, age=10.0)
    with pytest.raises(TilesrError, match="some-other-node"):
        take_claim(out)
    _write_claim(claim_path(out), elsewhere, age=claim_mod.STALE_AFTER_SECONDS + 5)
    with claimed(out):
        pass


def test_the_holder_keeps_its_claim_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(claim_mod, "HEARTBEAT_SECONDS", 0.05)
    out = tmp_path / "out.ome.zarr"
    with claimed(out):
        path = claim_path(out)
        old = time.time() - 1000
        os.utime(path, (old, old))
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 5


def test_two_runs_breaking_one_stale_claim_at_once_leave_one_holder(tmp_path):
    out = tmp_path / "out.ome.zarr"
    _write_claim(claim_path(out), _dead_holder())
    results, barrier = [], threading.Barrier(8)

    def contender():
        barrier.wait()
        try:
            results.append(take_claim(out).token)
        except TilesrError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if "being written" not in r]
    assert len(winners) == 1, results
    assert json.loads(claim_path(out).read_text())["token"] == winners[0]
