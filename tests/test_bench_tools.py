"""The benchmark tools refuse a wrong ``--out`` before their minutes of work.

``--out`` names the markdown report whose region a tool rewrites; a figure's name there
used to crash ``bench_care`` after it had spent its time and written its JSON.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from _bench_common import markdown_report

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def test_markdown_report_accepts_markdown_only():
    assert markdown_report("docs/benchmarks.md") == Path("docs/benchmarks.md")
    assert markdown_report("NOTES.MD") == Path("NOTES.MD")
    with pytest.raises(argparse.ArgumentTypeError, match="markdown report"):
        markdown_report("docs/benchmarks/care.png")


@pytest.mark.parametrize(
    "tool",
    ["bench_care", "bench_engine", "bench_overlap", "bench_quality", "bench_seams", "bench_zstack"],
)
def test_tool_refuses_a_figure_as_out(tool, tmp_path):
    out = tmp_path / "figure.png"
    done = subprocess.run(
        [sys.executable, str(TOOLS / f"{tool}.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "markdown report" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
