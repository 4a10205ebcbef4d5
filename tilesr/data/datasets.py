"""Paired low/high-resolution images from disk, and random training patches from them.

Loaders return :class:`ImagePair` lists in raw intensities; :class:`PatchSampler`
turns them into model-space batches (percentile-normalised to [-1, 1], the LR image
upsampled to the HR grid). Everything here is NumPy only (no torch), so the trainer,
tests and notebooks share it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from numpy.typing import NDArray

from tilesr.data.augment import Dihedral
from tilesr.data.conditioning import conditioning
from tilesr.data.normalize import IntensityRange, percentile_range
from tilesr.data.resize import BICUBIC_MARGIN, bicubic_padding
from tilesr.errors import TilesrError

_TIFF_SUFFIXES = (".tif", ".tiff")
_LEVEL_DIR = re.compile(r"^level_(\d+)$")
_W2S_FILE = re.compile(r"^(\d{3})_(\d)\.tiff?$")


def _pair_scale(lr_shape: tuple[int, ...], hr_shape: tuple[int, ...], what: str) -> int:
    """The integer factor from LR to HR, or TilesrError naming ``what`` and both shapes."""
    if len(lr_shape) != 2 or len(hr_shape) != 2:
        raise TilesrError(f"{what}: images must be 2D, got LR {lr_shape} and HR {hr_shape}")
    if min(lr_shape) < 1:
        raise TilesrError(f"{what}: LR image is empty, shape {lr_shape}")
    factor = hr_shape[0] // lr_shape[0]
    if factor < 1 or hr_shape != (lr_shape[0] * factor, lr_shape[1] * factor):
        raise TilesrError(
            f"{what}: HR shape {hr_shape} is not an integer multiple (scale x) of "
            f"LR shape {lr_shape}"
        )
    return factor


@dataclass(frozen=True, eq=False)
class ImagePair:
    """A registered low-resolution / high-resolution image pair in raw intensities.

    ``lr`` is ``(h, w)``, ``hr`` is ``(h * scale, w * scale)``; both are stored as
    float32 (other dtypes are converted). ``scale`` 1 means pure denoising.
    """

    lr: NDArray[np.float32]
    hr: NDArray[np.float32]
    name: str

    def __post_init__(self) -> None:
        # frozen: convert through object.__setattr__, once, at construction
        object.__setattr__(self, "lr", np.asarray(self.lr, dtype=np.float32))
        object.__setattr__(self, "hr", np.asarray(self.hr, dtype=np.float32))
        _pair_scale(self.lr.shape, self.hr.shape, self.name)

    @property
    def scale(self) -> int:
        """HR pixels per LR pixel along each axis."""
        return self.hr.shape[0] // self.lr.shape[0]


def _read_2d(path: Path) -> NDArray[np.float32]:
    """A 2D float32 image from a TIFF (singleton axes dropped)."""
    try:
        data = tifffile.imread(path)
    except Exception as exc:  # tifffile raises several types for bad files
        raise TilesrError(f"cannot read {path}: {exc}") from exc
    data = np.squeeze(data)
    if data.ndim != 2:
        raise TilesrError(f"{path}: expected a 2D image, got shape {data.shape}")
    return data.astype(np.float32)


def _tiffs(folder: Path) -> dict[str, Path]:
    """TIFF files in ``folder`` by stem; TilesrError if the folder is missing or empty."""
    if not folder.is_dir():
        raise TilesrError(f"folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _TIFF_SUFFIXES)
    if not files:
        raise TilesrError(f"no TIFF images in {folder}")
    return {p.stem: p for p in files}


def _load_folders(lr_dir: Path, hr_dir: Path, prefix: str = "") -> list[ImagePair]:
    """Pairs from two folders whose files match by name."""
    lr_files, hr_files = _tiffs(lr_dir), _tiffs(hr_dir)
    for stem, path in lr_files.items():
        if stem not in hr_files:
            raise TilesrError(f"unpaired file {path}: no image named {stem!r} in {hr_dir}")
    for stem, path in hr_files.items():
        if stem not in lr_files:
            raise TilesrError(f"unpaired file {path}: no image named {stem!r} in {lr_dir}")
    pairs = []
    for stem in lr_files:
        lr, hr = _read_2d(lr_files[stem]), _read_2d(hr_files[stem])
        _pair_scale(lr.shape, hr.shape, f"{lr_files[stem]} / {hr_files[stem]}")
        pairs.append(ImagePair(lr, hr, prefix + stem))
    return pairs


def _check_one_scale(pairs: Sequence[ImagePair], where: Path) -> None:
    first = pairs[0]
    for pair in pairs[1:]:
        if pair.scale != first.scale:
            raise TilesrError(
                f"{where}: {pair.name} has scale {pair.scale} but {first.name} has "
                f"scale {first.scale}"
            )


def _levels(test_wf: Path) -> dict[int, Path]:
    if not test_wf.is_dir():
        raise TilesrError(f"folder not found: {test_wf}")
    found = {}
    for sub in test_wf.iterdir():
        match = _LEVEL_DIR.match(sub.name)
        if match and sub.is_dir():
            found[int(match.group(1))] = sub
    if not found:
        raise TilesrError(f"no level_XX folders in {test_wf}")
    return dict(sorted(found.items()))


def load_biosr(root: str | Path, split: str = "train", level: int | None = None) -> list[ImagePair]:
    """Load a dataset in the BioSR folder layout.

    Parameters
    ----------
    root
        Folder holding ``training_wf/``, ``training_gt/`` (split ``"train"``) and
        ``test_wf/level_XX/``, ``test_gt/`` (split ``"test"``). LR and HR files pair up
        by name (``0001.tif`` with ``0001.tif``); every file must have a partner.
    split
        ``"train"`` or ``"test"``.
    level
        Test noise level to load (``level_XX``); ``None`` loads every level found,
        naming pairs ``level_XX/NNNN``. Training data have no levels.

    Returns
    -------
    list of ImagePair
        Sorted by name; all pairs share one scale.
    """
    base = Path(root)
    if not base.is_dir():
        raise TilesrError(f"dataset folder not found: {base}")
    if split == "train":
        if level is not None:
            raise TilesrError(f"the training split has no noise levels, got level={level}")
        pairs = _load_folders(base / "training_wf", base / "training_gt")
    elif split == "test":
        levels = _levels(base / "test_wf")
        if level is not None:
            if level not in levels:
                known = ", ".join(str(k) for k in levels)
                raise TilesrError(f"unknown level {level} in {base / 'test_wf'}; found {known}")
            levels = {level: levels[level]}
        pairs = []
        for folder in levels.values():
            pairs += _load_folders(folder, base / "test_gt", prefix=f"{folder.name}/")
    else:
        raise TilesrError(f"split must be 'train' or 'test', got {split!r}")
    _check_one_scale(pairs, base)
    return pairs


def load_w2s(
    root: str | Path,
    fields: Sequence[int] | None = None,
    channels: Sequence[int] = (0, 1, 2),
) -> list[ImagePair]:
    """Load W2S widefield denoising pairs (scale 1).

    Parameters
    ----------
    root
        Folder with ``noisy/NNN_C.tif`` (single frame, the LR) and ``clean/NNN_C.tif``
        (400-frame average, the HR).
    fields
        Field-of-view numbers as in the file names (1-based); ``None`` for all found.
    channels
        Channel numbers ``C`` to load.

    Returns
    -------
    list of ImagePair
        Named ``NNN_C``, ordered by field then channel.
    """
    base = Path(root)
    noisy, clean = base / "noisy", base / "clean"
    found = _tiffs(noisy)
    _tiffs(clean)
    if fields is None:
        fields = sorted({int(m.group(1)) for p in found.values() if (m := _W2S_FILE.match(p.name))})
        if not fields:
            raise TilesrError(f"no NNN_C.tif files in {noisy}")
    pairs = []
    for field in fields:
        for channel in channels:
            stem = f"{int(field):03d}_{int(channel)}"
            paths = [folder / f"{stem}.tif" for folder in (noisy, clean)]
            for path in paths:
                if not path.is_file():
                    raise TilesrError(f"W2S image not found: {path}")
            lr, hr = _read_2d(paths[0]), _read_2d(paths[1])
            _pair_scale(lr.shape, hr.shape, f"{paths[0]} / {paths[1]}")
            pairs.append(ImagePair(lr, hr, stem))
    if not pairs:
        raise TilesrError("no W2S pairs selected (empty fields or channels)")
    return pairs


def load_confocal_sted(paths: str | Path | Sequence[str | Path]) -> list[ImagePair]:
    """Load confocal (LR) / STED (HR) pairs stored as channels on axis 0 (scale 1).

    Parameters
    ----------
    paths
        TIFF files or folders of them. Each file is ``(2, H, W)`` = [confocal, STED]
        or ``(3, H, W)`` = [confocal, STED, label] (the label is ignored).

    Returns
    -------
    list of ImagePair
        Named by file stem.
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files += list(_tiffs(path).values())
        elif path.is_file():
            files.append(path)
        else:
            raise TilesrError(f"confocal/STED image not found: {path}")
    if not files:
        raise TilesrError("no confocal/STED images given")
    pairs = []
    for path in files:
        try:
            data = tifffile.imread(path)
        except Exception as exc:  # tifffile raises several types for bad files
            raise TilesrError(f"cannot read {path}: {exc}") from exc
        if data.ndim != 3 or data.shape[0] not in (2, 3):
            raise TilesrError(
                f"{path}: expected channels first, (2, H, W) or (3, H, W), got {data.shape}"
            )
        pairs.append(ImagePair(data[0], data[1], path.stem))
    return pairs


class PatchSampler:
    """Random, identically cropped and augmented (cond, target) patches in model space.

    ``cond`` is the LR patch's :func:`~tilesr.data.conditioning.conditioning` with its
    image's own ``norm_low``/``norm_high`` percentiles (read with the bicubic margin, so
    a patch equals the same region of the whole image's conditioning); ``target`` is the
    HR patch normalised by the HR image's own percentiles. Both are clipped to [-1, 1]
    (the DDPM data range). Pairs are drawn uniformly, then a uniformly random crop,
    then (if ``augment``) one of the 8 flips/rotations applied to both.

    Parameters
    ----------
    pairs
        Image pairs, all of scale ``scale``.
    patch_size
        Patch side on the HR grid; a multiple of ``scale`` and at most each HR image.
    scale
        HR pixels per LR pixel.
    norm_low, norm_high
        Percentiles mapped to -1 and +1.
    augment
        Apply random flips and 90-degree rotations.
    """

    def __init__(
        self,
        pairs: Sequence[ImagePair],
        *,
        patch_size: int,
        scale: int,
        norm_low: float = 0.1,
        norm_high: float = 99.9,
        augment: bool = True,
    ) -> None:
        _check_patches(pairs, patch_size, scale)
        self.patch_size = patch_size
        self.scale = scale
        self.augment = augment
        self.names = [p.name for p in pairs]
        # pad the LR by the bicubic margin (as the upsampling pads a whole image), so
        # every crop reads a full margin; normalise the HR once
        self._lr: list[tuple[NDArray[np.float32], IntensityRange]] = []
        self._hr: list[NDArray[np.float32]] = []
        for pair in pairs:
            lr = np.pad(pair.lr, BICUBIC_MARGIN, mode=bicubic_padding(min(pair.lr.shape)))
            self._lr.append((lr, percentile_range(pair.lr, norm_low, norm_high)))
            self._hr.append(percentile_range(pair.hr, norm_low, norm_high).normalize(pair.hr))

    def __len__(self) -> int:
        return len(self._hr)

    def sample(
        self, rng: np.random.Generator, batch: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Draw ``batch`` patch pairs; returns ``(cond, target)``, each (batch, 1, P, P)."""
        if batch < 1:
            raise TilesrError(f"batch must be at least 1, got {batch}")
        p, s = self.patch_size, self.scale
        q, m = p // s, BICUBIC_MARGIN
        cond = np.empty((batch, 1, p, p), dtype=np.float32)
        target = np.empty((batch, 1, p, p), dtype=np.float32)
        for b in range(batch):
            k = int(rng.integers(len(self._hr)))
            hr = self._hr[k]
            i = int(rng.integers(hr.shape[0] // s - q + 1))
            j = int(rng.integers(hr.shape[1] // s - q + 1))
            lr, intensity = self._lr[k]
            c = conditioning(lr[i : i + q + 2 * m, j : j + q + 2 * m], s, intensity, margin=m)
            t = hr[i * s : i * s + p, j * s : j * s + p]
            if self.augment:
                transform = Dihedral.random(rng)
                c, t = transform.apply(c), transform.apply(t)
            cond[b, 0], target[b, 0] = c, t
        np.clip(target, -1.0, 1.0, out=target)
        return cond, target


def _check_patches(pairs: Sequence[ImagePair], patch_size: int, scale: int) -> None:
    """Refuse pairs of another scale or smaller than a patch, naming them."""
    if not pairs:
        raise TilesrError("PatchSampler needs at least one image pair")
    if scale < 1:
        raise TilesrError(f"scale must be a positive integer, got {scale}")
    if patch_size < 1 or patch_size % scale:
        raise TilesrError(
            f"patch size must be a positive multiple of the scale {scale}, got {patch_size}"
        )
    for pair in pairs:
        if pair.scale != scale:
            raise TilesrError(
                f"pair {pair.name!r} has scale {pair.scale} (LR {pair.lr.shape}, "
                f"HR {pair.hr.shape}), expected {scale}"
            )
        if min(pair.hr.shape) < patch_size:
            raise TilesrError(
                f"patch size {patch_size} is larger than image {pair.name!r} "
                f"(HR shape {pair.hr.shape})"
            )
