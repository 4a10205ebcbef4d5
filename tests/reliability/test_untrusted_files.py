"""Loading never executes content: checkpoints, configs, models and output paths."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tests.reliability.conftest import FAST, assert_one_line_error, run_cli, tree_digest, write_tiff
from tilesr.errors import TilesrError


class _CreatesFile:
    """A pickle payload that would create ``path`` when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_with_a_reduce_payload_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    from tilesr.model.checkpoint import load_checkpoint

    witness = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save(
        {"format": "tilesr-checkpoint", "format_version": 1, "model": _CreatesFile(witness)}, path
    )
    with pytest.raises(TilesrError, match=r"evil\.pt"):
        load_checkpoint(path)
    assert not witness.exists()
    # and a plain pickle file (not even a torch zip) likewise
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_CreatesFile(witness)))
    with pytest.raises(TilesrError):
        load_checkpoint(raw)
    assert not witness.exists()


def test_export_of_a_payload_checkpoint_is_a_one_line_error(tmp_path):
    torch = pytest.importorskip("torch")
    witness = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save(
        {"format": "tilesr-checkpoint", "format_version": 1, "model": _CreatesFile(witness)}, path
    )
    code, output = run_cli("export", path, tmp_path / "m.onnx")
    # export announces itself on a first line; the error is the one line after it
    assert code != 0 and "Traceback" not in output
    assert output.strip().splitlines()[-1].startswith("Error:")
    assert not witness.exists()
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch {witness}']",
        "!!python/object/new:subprocess.Popen [['touch', '{witness}']]",
        "!!python/name:os.system",
    ],
)
def test_config_with_python_tags_is_refused(tmp_path, tag):
    from tilesr.training.config import load_config

    witness = tmp_path / "pwned.txt"
    config = tmp_path / "evil.yaml"
    config.write_text(f"output_dir: {tag.format(witness=witness)}\n", encoding="utf-8")
    with pytest.raises(TilesrError, match="not valid YAML"):
        load_config(config)
    assert not witness.exists()
    code, output = run_cli("train", "--config", config)
    assert_one_line_error(code, output)
    assert not witness.exists()


def test_onnx_is_only_opened_by_onnxruntime(tmp_path, models):
    """A pickle named .onnx is not unpickled: ORT refuses it as protobuf."""
    witness = tmp_path / "pwned.txt"
    model = tmp_path / "evil.onnx"
    model.write_bytes(pickle.dumps(_CreatesFile(witness)))
    src = write_tiff(tmp_path / "in.tif", (30, 30))
    code, output = run_cli("restore", src, tmp_path / "o.zarr", "--model", model, *FAST)
    assert_one_line_error(code, output, "not a loadable ONNX model")
    assert not witness.exists()


# ------------------------------------------------------------------ output paths


@pytest.mark.parametrize("fmt", ["tiff", "zarr"])
def test_output_inside_the_input_is_refused(tmp_path, models, fmt):
    from tilesr.io import open_image, write_ome_zarr

    src = write_tiff(tmp_path / "in.tif", (30, 30))
    if fmt == "zarr":
        zsrc = tmp_path / "in.zarr"
        write_ome_zarr(zsrc, open_image(src).data.compute(), axes="yx")
        src = zsrc
    digest = tree_digest(src)
    for out, needle in (
        (src / "restored.zarr", "inside the input"),
        (src, "input itself"),
        (tmp_path / "x" / ".." / src.name, "input itself"),
    ):
        code, output = run_cli(
            "restore", src, out, "--model", models["analytic2"], "--overwrite", *FAST
        )
        assert_one_line_error(code, output, needle)
    assert tree_digest(src) == digest


def test_symlinked_output_into_the_input_is_refused(tmp_path, models):
    from tilesr.io import open_image, write_ome_zarr

    src = tmp_path / "in.zarr"
    write_ome_zarr(
        src, open_image(write_tiff(tmp_path / "in.tif", (30, 30))).data.compute(), axes="yx"
    )
    link = tmp_path / "link"
    link.symlink_to(src)
    digest = tree_digest(src)
    code, output = run_cli("restore", src, link / "out.zarr", "--model", models["analytic2"], *FAST)
    assert_one_line_error(code, output, "inside the input")
    assert tree_digest(src) == digest


def test_existing_output_needs_overwrite(tmp_path, models):
    src = write_tiff(tmp_path / "in.tif", (30, 30))
    out = tmp_path / "out.zarr"
    args = ["--model", models["analytic2"], *FAST]
    assert run_cli("restore", src, out, *args)[0] == 0
    before = tree_digest(out)
    code, output = run_cli("restore", src, out, "--seed", "3", *args)
    assert_one_line_error(code, output, "--overwrite")
    assert tree_digest(out) == before
    # a folder that is not a zarr store is never deleted, even with --overwrite
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.txt").write_text("years of work")
    code, output = run_cli("restore", src, other, "--overwrite", *args)
    assert_one_line_error(code, output, "not a zarr store")
    assert (other / "thesis.txt").read_text() == "years of work"
    code, output = run_cli("restore", src, out, "--seed", "3", "--overwrite", *args)
    assert code == 0, output
    assert tree_digest(out) != before
