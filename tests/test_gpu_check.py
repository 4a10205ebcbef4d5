"""tools/gpu_check.sh on a machine without a GPU: says so, records it, exits 0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_check.sh"), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "no NVIDIA GPU" in run.stdout and "nothing measured" in run.stdout
    record = json.loads(out.read_text())
    assert record["gpu"] is None and "nothing measured" in record["message"]
