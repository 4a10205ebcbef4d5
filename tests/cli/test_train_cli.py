from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tilesr.cli import main

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def test_without_torch_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    result = CliRunner().invoke(main, ["train", "--config", str(TINY)])
    assert result.exit_code == 1
    assert "pip install 'tilesr[train]'" in result.output
    assert "Traceback" not in result.output


def test_bad_config_is_a_one_line_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("overlap: 8", "overlap: 32"))
    result = CliRunner().invoke(main, ["train", "--config", str(bad)])
    assert result.exit_code == 1
    assert "32 versus 32" in result.output
    assert "Traceback" not in result.output


def test_train_with_overrides_then_resume(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = ["train", "--config", str(TINY), "--output-dir", str(tmp_path / "run"), "--quiet"]
        result = CliRunner().invoke(main, [*args, "--steps", "3"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output.strip().splitlines()[-1])
        assert summary["step"] == 3
        assert Path(summary["checkpoint"]).is_file()
        again = CliRunner().invoke(main, [*args, "--steps", "3"])
        assert again.exit_code == 1 and "--resume" in again.output
        longer = CliRunner().invoke(main, [*args, "--steps", "5", "--resume"])
        assert longer.exit_code == 0, longer.output
        assert json.loads(longer.output.strip().splitlines()[-1])["step"] == 5
    finally:
        torch.set_num_threads(before)
