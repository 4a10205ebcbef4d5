"""``tilesr train`` SIGKILLed at random points and inside checkpoint saves, then resumed.

The latest checkpoint is always loadable (saves are temp file + fsync + rename) and a
resumed run ends exactly where an uninterrupted one does: same weights, EMA, optimizer
moments, LR schedule and loss history (batches are keyed by (seed, step)).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from tests.reliability.conftest import run_cli  # noqa: E402
from tilesr.model.checkpoint import load_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
STEPS = 10


#: one torch thread: oversubscribed cores on a shared runner make each step 10x slower
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """configs/tiny.yaml with 10 small steps, a checkpoint every 2, no validation sampling."""
    raw = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    raw["training"].update(
        steps=STEPS,
        checkpoint_every=2,
        log_every=2,
        warmup=2,
        validate_every=STEPS,
        batch_size=2,  # a few hundred ms per step on a busy 2-core CI runner
        patch_size=16,
    )
    raw["validation"].update(n_images=0)
    path = tmp_path_factory.mktemp("train_cfg") / "tiny-kill.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def straight(tmp_path_factory, config) -> Path:
    out = tmp_path_factory.mktemp("straight")
    code, output = run_cli("train", "--config", config, "--output-dir", out, "--quiet")
    assert code == 0, output
    return out / "checkpoint.pt"


def _assert_same_run(a_path: Path, b_path: Path) -> None:
    a, b = load_checkpoint(a_path), load_checkpoint(b_path)
    assert a.step == b.step == STEPS
    for key in a.model:
        torch.testing.assert_close(a.model[key], b.model[key], rtol=0, atol=1e-6)
        torch.testing.assert_close(a.ema[key], b.ema[key], rtol=0, atol=1e-6)
    assert a.optimizer is not None and b.optimizer is not None
    for pid, state in a.optimizer["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(value, b.optimizer["state"][pid][name], rtol=0, atol=1e-6)
    assert a.lr_scheduler["last_epoch"] == b.lr_scheduler["last_epoch"]
    assert a.history["loss"] == pytest.approx(b.history["loss"], abs=1e-6)


def _resume(config: Path, out: Path) -> None:
    code, output = run_cli("train", "--config", config, "--output-dir", out, "--resume", "--quiet")
    assert code == 0, output


def test_kill_during_training_then_resume(tmp_path, config, straight):
    out = tmp_path / "run"
    ckpt = out / "checkpoint.pt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tilesr",
            "train",
            "--config",
            str(config),
            "--output-dir",
            str(out),
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            seen.add(ckpt.stat().st_mtime_ns)
        except FileNotFoundError:
            pass
        if len(seen) >= 2:  # two saves done: somewhere after step 4
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "training finished before the kill"
    last = load_checkpoint(ckpt)  # never broken
    assert 4 <= last.step < STEPS and last.step % 2 == 0
    _resume(config, out)
    _assert_same_run(ckpt, straight)


# a child that trains and SIGKILLs itself inside the N-th checkpoint save
_SAVE_KILLER = textwrap.dedent(
    """
    import io, os, signal, sys
    import torch
    import tilesr.model.checkpoint as ck

    config, out, nth, where = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    saves = [0]
    real_save, real_replace = torch.save, os.replace

    def save(obj, fh, *args, **kwargs):
        saves[0] += 1
        if saves[0] == nth and where == "write":
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])  # half of the file
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, fh, *args, **kwargs)

    def replace(src, dst):
        if saves[0] == nth and where == "rename":  # written and synced, not yet renamed
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)

    ck.torch.save = save
    ck.os.replace = replace
    from tilesr.cli import main
    main(["train", "--config", config, "--output-dir", out, "--quiet"])
    """
)


@pytest.mark.parametrize("where", ["write", "rename"])
def test_kill_inside_a_checkpoint_save(tmp_path, config, straight, where):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", _SAVE_KILLER, str(config), str(out), "3", where],
        capture_output=True,
        timeout=300,
        env=ENV,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    # the third save (step 6) died; the second (step 4) is intact and is the latest
    assert load_checkpoint(out / "checkpoint.pt").step == 4
    leftovers = list(out.glob(".checkpoint.pt.*.tmp"))
    assert len(leftovers) == 1  # the dead save's temp file, never renamed into place
    _resume(config, out)
    _assert_same_run(out / "checkpoint.pt", straight)
