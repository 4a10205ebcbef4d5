"""Write simulated pairs to disk in the BioSR folder layout."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import numpy as np
import tifffile
from tqdm import tqdm

from tilesr.errors import TilesrError
from tilesr.simulate.forward import ForwardModel, check_level, check_scale, render_pair
from tilesr.simulate.generate import _check_size
from tilesr.simulate.structures import StructureParams

TRAIN_STREAM = 0x54
TEST_STREAM = 0x45
#: the sub-folders a BioSR dataset consists of (removed first when overwriting)
BIOSR_FOLDERS = ("training_wf", "training_gt", "test_wf", "test_gt")


def prepare_output_dir(out_dir: Path, *, overwrite: bool, owned: Iterable[str] = ()) -> None:
    """Create ``out_dir``; refuse a non-empty one unless ``overwrite``.

    With ``overwrite`` only the entries named in ``owned`` are removed, so a mistyped
    path never wipes unrelated files.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise TilesrError(f"output path exists and is not a folder: {out_dir}")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise TilesrError(f"output folder is not empty: {out_dir} (use overwrite to replace)")
        for name in owned:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _check_request(levels: Iterable[int], n_train: int, n_test: int) -> list[int]:
    """The sorted noise levels, refusing an empty or impossible request."""
    level_list = sorted({int(lv) for lv in levels})
    if not level_list:
        raise TilesrError("levels must name at least one noise level 1..9")
    for lv in level_list:
        check_level(lv)
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise TilesrError(
            f"need n_train, n_test >= 0 and at least one image, got {n_train} and {n_test}"
        )
    return level_list


def write_biosr_dataset(
    out_dir: str | Path,
    *,
    n_train: int,
    n_test: int,
    size: int,
    scale: int,
    levels: Iterable[int] = range(1, 10),
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    model: ForwardModel | None = None,
    params: StructureParams | None = None,
) -> Path:
    """Simulate a dataset and write it as float32 TIFFs in the BioSR layout.

    ``training_wf/NNNN.tif`` (LR) and ``training_gt/NNNN.tif`` (HR) hold ``n_train``
    pairs, each at a noise level drawn uniformly from ``levels``;
    ``test_wf/level_XX/NNNN.tif`` and ``test_gt/NNNN.tif`` hold ``n_test`` structures,
    the same at every level (only the noise differs). Numbering starts at 0001.
    Values are raw float32: LR in camera counts, HR clean (see
    :mod:`tilesr.simulate.forward`). Read it back with
    :func:`tilesr.data.datasets.load_biosr`.

    Parameters
    ----------
    out_dir
        Output folder; must be empty or absent unless ``overwrite`` (which replaces
        only the four BioSR sub-folders).
    n_train, n_test
        Number of training pairs and of test structures.
    size
        HR side in pixels (a multiple of ``scale``).
    scale
        Integer resolution factor.
    levels
        Noise levels 1..9 to use.
    seed
        Seed of the whole dataset.
    overwrite
        Replace an existing dataset.
    progress
        Show a progress bar.
    model, params
        Optics/camera and structure statistics (defaults if omitted).

    Returns
    -------
    pathlib.Path
        The output folder.
    """
    s = check_scale(scale)
    _check_size(size, s)
    level_list = _check_request(levels, n_train, n_test)
    root = Path(out_dir)
    prepare_output_dir(root, overwrite=overwrite, owned=BIOSR_FOLDERS)
    folders = [root / "training_wf", root / "training_gt", root / "test_gt"]
    folders += [root / "test_wf" / f"level_{lv:02d}" for lv in level_list]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)

    render = partial(render_pair, size=size, scale=s, model=model, params=params)
    train_levels = np.random.default_rng([int(seed), TRAIN_STREAM]).choice(level_list, n_train)
    with tqdm(total=n_train + n_test, desc="simulate", unit="pair", disable=not progress) as bar:
        for i in range(n_train):
            field = (int(seed), TRAIN_STREAM, i)
            hr, (lr,) = render(field, noise_levels=[int(train_levels[i])], noise_key=field)
            tifffile.imwrite(root / "training_wf" / f"{i + 1:04d}.tif", lr)
            tifffile.imwrite(root / "training_gt" / f"{i + 1:04d}.tif", hr)
            bar.update()
        for i in range(n_test):
            field = (int(seed), TEST_STREAM, i)
            hr, lrs = render(field, noise_levels=level_list, noise_key=field)
            tifffile.imwrite(root / "test_gt" / f"{i + 1:04d}.tif", hr)
            for lv, lr in zip(level_list, lrs, strict=True):
                tifffile.imwrite(root / "test_wf" / f"level_{lv:02d}" / f"{i + 1:04d}.tif", lr)
            bar.update()
    return root
