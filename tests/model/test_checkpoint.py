from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.model.tiny import tiny_checkpoint, tiny_config  # noqa: E402
from tilesr.errors import TilesrError  # noqa: E402
from tilesr.model import checkpoint as ckpt_module  # noqa: E402
from tilesr.model.checkpoint import (  # noqa: E402
    Checkpoint,
    build_model,
    load_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from tilesr.model.unet import UNet  # noqa: E402


def _assert_states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    model = UNet(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.zeros(1)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    original = tiny_checkpoint(tmp_path / "base.pt")
    rng = {"torch": torch.get_rng_state(), "numpy": {"state": 2**100 + 3, "inc": 5}}
    full = Checkpoint(
        **{
            **original.__dict__,
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": scheduler.state_dict(),
            "rng_state": rng,
        },
    )
    save_checkpoint(tmp_path / "full.pt", full)
    loaded = load_checkpoint(tmp_path / "full.pt")
    _assert_states_equal(loaded.model, full.model)
    _assert_states_equal(loaded.ema, full.ema)
    assert loaded.unet == full.unet
    assert loaded.metadata == full.metadata
    assert loaded.step == 7
    assert (loaded.train_config, loaded.history) == (full.train_config, full.history)
    assert loaded.rng_state is not None and loaded.rng_state["numpy"]["state"] == 2**100 + 3
    torch.testing.assert_close(loaded.rng_state["torch"], rng["torch"])
    assert loaded.lr_scheduler == scheduler.state_dict()
    assert loaded.optimizer is not None
    assert loaded.optimizer["param_groups"] == optimizer.state_dict()["param_groups"]
    assert loaded.model_metadata().size_multiple == tiny_config().size_multiple
    assert loaded.unet_config() == tiny_config()


def test_build_model_uses_ema_weights_by_default(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "c.pt", ema_offset=0.5)
    _assert_states_equal(build_model(ckpt).state_dict(), ckpt.ema)
    _assert_states_equal(build_model(ckpt, ema=False).state_dict(), ckpt.model)
    assert not build_model(ckpt).training


def test_build_model_accepts_averaged_model_ema(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "c.pt")
    averaged = torch.optim.swa_utils.AveragedModel(build_model(ckpt))
    wrapped = Checkpoint(**{**ckpt.__dict__, "ema": averaged.state_dict()})
    assert "n_averaged" in wrapped.ema
    _assert_states_equal(build_model(wrapped).state_dict(), ckpt.ema)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "c.pt")
    bad = Checkpoint(**{**ckpt.__dict__, "unet": {**ckpt.unet, "bottleneck": 32}})
    with pytest.raises(TilesrError, match="do not fit"):
        build_model(bad)


def test_failed_save_leaves_the_previous_file_intact(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "model.pt"
    tiny_checkpoint(path, seed=1)
    before = path.read_bytes()

    def broken_save(obj, fh) -> None:  # dies halfway through writing
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        tiny_checkpoint(path, seed=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp file left
    monkeypatch.undo()
    assert load_checkpoint(path).step == 7


def test_next_save_removes_what_a_killed_save_left(tmp_path: Path) -> None:
    # a SIGKILL between writing and renaming leaves a hidden temporary of a checkpoint's
    # size; the next save clears it, but never a temporary another save may still write
    import os
    import time

    path = tmp_path / "checkpoint.pt"
    killed = tmp_path / ".checkpoint.pt.0123456789ab.tmp"
    in_flight = tmp_path / ".checkpoint.pt.ba9876543210.tmp"
    other = tmp_path / ".best.pt.0123456789ab.tmp"
    for left in (killed, in_flight, other):
        left.write_bytes(b"PK\x03\x04 half a zip")
    old = time.time() - 2 * ckpt_module.STALE_TEMP_S
    for left in (killed, other):
        os.utime(left, (old, old))
    tiny_checkpoint(path, seed=1)
    assert not killed.exists()
    assert in_flight.exists() and other.exists()  # fresh, or another file's
    assert load_checkpoint(path).step == 7


def test_values_torch_load_could_not_read_are_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    ckpt = tiny_checkpoint(path)
    before = path.read_bytes()
    bad = Checkpoint(**{**ckpt.__dict__, "history": {"loss": [1.0], "when": object()}})
    with pytest.raises(TilesrError, match=r"history\.when: object cannot be stored"):
        save_checkpoint(path, bad)
    assert path.read_bytes() == before


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TilesrError, match=r"checkpoint not found: .*nope\.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(TilesrError, match=r"notes\.pt is not a readable tilesr checkpoint"):
        load_checkpoint(path)


def test_plain_tensor_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(TilesrError, match=r"tensor\.pt is not a tilesr checkpoint"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):  # pragma: no cover - must never run
        return (print, ("executed!",))


def test_arbitrary_pickles_are_not_executed(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "tilesr-checkpoint", "x": _Payload()}, path)
    with pytest.raises(TilesrError, match=r"evil\.pt"):
        load_checkpoint(path)
    assert "executed!" not in capsys.readouterr().out


def test_other_format_versions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.pt"
    torch.save({"format": "tilesr-checkpoint", "format_version": 99}, path)
    with pytest.raises(TilesrError, match="version 99"):
        load_checkpoint(path)


def test_weights_hash_is_order_free_and_sees_every_value(tmp_path: Path) -> None:
    state = tiny_checkpoint(tmp_path / "c.pt").ema
    reordered = dict(reversed(list(state.items())))
    assert weights_sha256(reordered) == weights_sha256(state)
    key = next(iter(state))
    changed = {**state, key: state[key].clone()}
    changed[key].view(-1)[0] += 1e-6
    assert weights_sha256(changed) != weights_sha256(state)
