"""The progress a person reads: whole units with an ETA; plain lines when not on a terminal."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import tifffile
from click.testing import CliRunner

from tilesr import progress as progress_mod
from tilesr.cli import main
from tilesr.progress import Progress

CLOCK = r"\d+(?::\d\d)+"
LINE = re.compile(
    r"^restoring +(\d+)% \((\d+)/(\d+) network evaluations\), "
    rf"({CLOCK} elapsed(, about {CLOCK} left)?|done in {CLOCK})$"
)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_fractions_of_a_tile_add_up_to_whole_evaluations(monkeypatch):
    monkeypatch.setattr("sys.stderr", _Terminal())  # the tqdm bar
    bar = Progress(unit="network evaluation")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "TqdmWarning: clamping frac"
        with bar.shown(16, scale=6):  # 16 tiles of 2 samples x 3 steps
            seen = []
            for _ in range(16 * 3):
                bar.update(1 / 3)  # a network batch holding a third of a tile's evaluations
                seen.append(bar.done)
            assert all(isinstance(n, int) for n in seen)
            assert seen[-1] == 96
            bar.update(1e-9)  # float crumbs never push the count past the total
            assert bar.done == 96


def test_without_a_terminal_plain_lines_every_five_percent(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    bar = Progress(unit="network evaluation")
    with bar.shown(200):
        for _ in range(200):
            bar.update(1.0)
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue()
    assert len(lines) == 20  # 5 %, 10 %, ..., 100 %
    percents = [int(LINE.match(line).group(1)) for line in lines]
    assert percents == list(range(5, 101, 5))
    assert lines[-1].endswith(tuple(f"done in 0:0{s}" for s in range(10)))


def test_without_a_terminal_a_line_every_30_seconds(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    clock = [1000.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: clock[0])
    bar = Progress(unit="network evaluation")
    with bar.shown(1000):
        for _ in range(3):
            clock[0] += 31.0
            bar.update(1.0)  # far below 5 %, but half a minute has passed
    lines = err.getvalue().splitlines()
    assert [LINE.match(line).group(2) for line in lines] == ["1", "2", "3"]
    assert "1:33 elapsed, about" in lines[-1]


def test_the_restore_command_logs_plain_progress_lines(tmp_path, models):
    data = (np.random.default_rng(2).random((40, 52)) * 500).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", data, metadata={"axes": "YX"})
    args = ["restore", str(tmp_path / "in.tif"), str(tmp_path / "out.zarr")]
    options = ["--model", str(models["spatial2"]), "--steps", "3", "--samples", "2"]
    result = CliRunner().invoke(main, [*args, *options, "--sampler", "ddim"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines and all(LINE.match(line) for line in lines), lines
    first = LINE.match(lines[0])
    assert int(first.group(3)) % 6 == 0  # tiles x 2 samples x 3 steps
    assert LINE.match(lines[-1]).group(2) == first.group(3)
