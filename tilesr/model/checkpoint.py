"""Training checkpoints: one ``torch.save`` file of tensors and plain Python values.

Only tensors, dicts, lists, tuples, str, int, float, bool and None are stored, so that
:func:`load_checkpoint` can use ``torch.load(weights_only=True)`` and never executes
code from the file. Saves are atomic: a crash or error mid-save leaves the previous
checkpoint untouched.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import secrets
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from tilesr.errors import TilesrError, first_line
from tilesr.metadata import ModelMetadata
from tilesr.model.unet import UNetConfig

CHECKPOINT_FORMAT = "tilesr-checkpoint"
CHECKPOINT_VERSION = 1

_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.dtype)


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to resume training or export a model.

    Attributes
    ----------
    unet
        ``UNetConfig.to_dict()``.
    metadata
        ``ModelMetadata`` fields as a plain dict (``dataclasses.asdict``).
    model, ema
        ``state_dict()`` of the trained U-Net and of its exponential moving average
        (same keys as ``UNet.state_dict()``).
    optimizer, lr_scheduler
        Their ``state_dict()``, or None.
    step
        Optimisation steps taken.
    train_config, history
        The training configuration and the loss/metric history, as plain values.
    rng_state
        Random generator states for an exact resume (tensors and plain values), or None.
    """

    unet: dict[str, Any]
    metadata: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    lr_scheduler: dict[str, Any] | None = None
    step: int = 0
    train_config: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    rng_state: dict[str, Any] | None = None

    def model_metadata(self) -> ModelMetadata:
        """The checkpoint's :class:`~tilesr.metadata.ModelMetadata`."""
        return ModelMetadata.from_dict(dict(self.metadata), source="checkpoint metadata")

    def unet_config(self) -> UNetConfig:
        """The checkpoint's :class:`~tilesr.model.unet.UNetConfig`."""
        return UNetConfig.from_dict(dict(self.unet))


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    Raises
    ------
    TilesrError
        If the checkpoint holds a value ``torch.load(weights_only=True)`` could not read
        back, or the folder is not writable.
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION}
    for f in fields(Checkpoint):
        value = getattr(ckpt, f.name)
        _check_plain(value, f.name)
        payload[f.name] = value
    if not path.parent.is_dir():
        raise TilesrError(f"checkpoint folder does not exist: {path.parent}")
    tmp = temp_sibling(path)
    try:
        with open(tmp, "xb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors loaded on the CPU).

    Raises
    ------
    TilesrError
        If the file is missing, unreadable, or not a tilesr checkpoint of a supported version.
    """
    path = Path(path)
    if not path.is_file():
        raise TilesrError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling garbage fails in many ways (KeyError, EOFError, ...)
        # torch's own message suggests weights_only=False, which we never do: name the type only
        raise TilesrError(
            f"{path} is not a readable tilesr checkpoint: not a torch.save file of tensors "
            f"and plain values ({type(exc).__name__})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise TilesrError(f"{path} is not a tilesr checkpoint (no {CHECKPOINT_FORMAT!r} marker)")
    version = data.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise TilesrError(
            f"{path}: checkpoint format version {version!r} is not supported "
            f"(this tilesr reads version {CHECKPOINT_VERSION})"
        )
    names = [f.name for f in fields(Checkpoint)]
    missing = [n for n in ("unet", "metadata", "model", "ema") if not isinstance(data.get(n), dict)]
    if missing:
        raise TilesrError(f"{path}: checkpoint lacks {missing}")
    return Checkpoint(**{n: data[n] for n in names if n in data})


def build_model(ckpt: Checkpoint, *, ema: bool = True, source: str = "checkpoint") -> Any:
    """The network (a :class:`UNet`, or a :class:`~tilesr.model.refined.RefinedUNet`) in
    eval mode holding the checkpoint's EMA (or raw) weights."""
    from tilesr.metadata import ScheduleSpec
    from tilesr.model.refined import build_network

    schedule = ScheduleSpec(**ckpt.metadata.get("schedule", {}))
    try:
        model = build_network(ckpt.unet, schedule)
    except (TypeError, ValueError) as exc:
        raise TilesrError(f"{source}: unusable network config ({exc})") from None
    state = ema_state(ckpt) if ema else ckpt.model
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise TilesrError(
            f"{source}: weights do not fit its unet config ({first_line(exc)})"
        ) from None
    return model.eval()


def ema_state(ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    """EMA weights under ``UNet.state_dict()`` keys.

    Accepts both a plain state dict and one from ``torch.optim.swa_utils.AveragedModel``
    (keys prefixed ``module.`` plus an ``n_averaged`` counter).
    """
    state = ckpt.ema
    if any(k.startswith("module.") for k in state):
        return {k.removeprefix("module."): v for k, v in state.items() if k != "n_averaged"}
    return dict(state)


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors of ``state``: sorted by key, each as key, dtype, shape, bytes."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_plain(value: Any, where: str) -> None:
    """Refuse values that ``torch.load(weights_only=True)`` would not read back."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TilesrError(f"checkpoint {where}: key {key!r} must be str or int")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise TilesrError(
            f"checkpoint {where}: {type(value).__name__} cannot be stored; "
            "use tensors, dicts, lists, str, int, float, bool or None"
        )


def temp_sibling(path: Path) -> Path:
    """A fresh hidden name next to ``path``: same filesystem, so ``os.replace`` is atomic.

    (Not ``tempfile.mkstemp``: its 0600 mode would survive the rename.) The stale
    siblings that killed writes of ``path`` left are removed first
    (:func:`remove_stale_temps`), for every writer that uses this name.
    """
    remove_stale_temps(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


#: a temporary sibling untouched for this long is what a killed save left, not one in flight
STALE_TEMP_S = 600.0


def remove_stale_temps(path: Path) -> None:
    """Delete the temporary siblings of ``path`` that killed saves left behind.

    A SIGKILL (or power loss) between writing and renaming leaves a hidden
    ``.NAME.HEX.tmp`` (a whole checkpoint or ONNX model); only stale ones are removed,
    so a write in flight in another process is never touched.
    """
    now = time.time()
    for left in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - left.stat().st_mtime > STALE_TEMP_S:
                left.unlink()


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
