from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from tests.model.tiny import tiny_checkpoint  # noqa: E402
from tilesr.cli import main  # noqa: E402
from tilesr.model.checkpoint import weights_sha256  # noqa: E402


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["export", *args])
    return result.exit_code, result.output


def _assert_one_line_error(code: int, output: str, *fragments: str) -> None:
    assert code != 0
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0]


def test_exports_and_prints_parity_and_hash(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "c.pt")
    code, output = _run(str(tmp_path / "c.pt"), str(tmp_path / "m.onnx"))
    assert code == 0, output
    assert (tmp_path / "m.onnx").is_file()
    assert "parity max abs diff" in output
    assert weights_sha256(ckpt.ema) in output

    # a second export to the same path is refused and leaves the file alone
    before = (tmp_path / "m.onnx").read_bytes()
    code, output = _run(str(tmp_path / "c.pt"), str(tmp_path / "m.onnx"))
    _assert_one_line_error(code, output, "m.onnx", "already exists", "--overwrite")
    assert (tmp_path / "m.onnx").read_bytes() == before
    code, output = _run(str(tmp_path / "c.pt"), str(tmp_path / "m.onnx"), "--overwrite")
    assert code == 0, output


@pytest.mark.parametrize("kind", ["tensor", "text", "missing"])
def test_non_checkpoints_give_a_one_line_error(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "weights.pt"
    if kind == "tensor":
        torch.save(torch.zeros(2, 2), source)
    elif kind == "text":
        source.write_text("these are not the weights you are looking for\n")
    code, output = _run(str(source), str(tmp_path / "m.onnx"))
    _assert_one_line_error(code, output, "weights.pt")
    assert not (tmp_path / "m.onnx").exists()


def test_opset_below_17_is_a_usage_error(tmp_path: Path) -> None:
    code, output = _run(str(tmp_path / "c.pt"), str(tmp_path / "m.onnx"), "--opset", "16")
    assert code == 2
    assert "--opset" in output and "Traceback" not in output


def test_target_optics_option(tmp_path: Path) -> None:
    from tilesr.denoisers.onnx_backend import OnnxDenoiser

    tiny_checkpoint(tmp_path / "o.pt", target_optics="unknown")
    code, output = _run(
        str(tmp_path / "o.pt"), str(tmp_path / "o.onnx"), "--target-optics", "sharper"
    )
    assert code == 0, output
    assert OnnxDenoiser(tmp_path / "o.onnx", threads=1).metadata.target_optics == "sharper"

    tiny_checkpoint(tmp_path / "plain.pt")
    code, output = _run(
        str(tmp_path / "plain.pt"), str(tmp_path / "p.onnx"), "--target-optics", "same"
    )
    _assert_one_line_error(code, output, "data.target_optics")
    assert not (tmp_path / "p.onnx").exists()
