"""The README's first command, `tilesr demo`, end to end on a small field with the bundled model."""

from __future__ import annotations

import json

import pytest
import zarr
from click.testing import CliRunner

from tilesr.cli import main
from tilesr.restore_file import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model missing")

SMALL = ["--size", "128", "--steps", "2", "--samples", "2", "--no-progress"]


def test_demo_writes_restoration_figure_and_metrics(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert "demo written to" in result.output
    group = zarr.open_group(out / "restored.ome.zarr", mode="r")
    assert group["0"].shape == (2, 128, 128)  # c: the restoration, then its uncertainty
    assert group.attrs["tilesr"]["status"] == "complete"
    # the simulated ground truth has no background: restored without data consistency,
    # although the bundled model's default has it
    assert group.attrs["tilesr"]["settings"]["consistency"] == 0.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"bicubic", "restored"}
    assert (out / "figure.png").stat().st_size > 10_000


def test_demo_never_replaces_a_folder_without_overwrite_nor_foreign_files(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    refused = CliRunner().invoke(main, ["demo", str(out), *SMALL])
    assert refused.exit_code != 0 and "--overwrite" in refused.output
    (out / "notes.txt").write_text("mine")
    foreign = CliRunner().invoke(main, ["demo", str(out), *SMALL, "--overwrite"])
    assert foreign.exit_code != 0 and "did not write" in foreign.output
    assert (out / "notes.txt").read_text() == "mine"
    assert "Traceback" not in refused.output + foreign.output
