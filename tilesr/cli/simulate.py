"""``tilesr simulate``: training pairs, a large test image, or a real image degraded."""

from __future__ import annotations

import re
from pathlib import Path

import click

from tilesr.errors import TilesrError


def _parse_levels(text: str) -> list[int]:
    """``"1-9"``, ``"2,5,8"`` or a mix, as a sorted list of levels."""
    levels: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise TilesrError(f"levels must look like 1-9 or 2,5,8, got {text!r}")
        lo = int(match.group(1))
        hi = int(match.group(2) or lo)
        levels.update(range(lo, hi + 1))
    return sorted(levels)


def _parse_shape(text: str) -> tuple[int, int]:
    """``"8192"`` (square) or ``"4096x8192"`` (height x width)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if match is None:
        raise TilesrError(f"--large must be N or HxW (HR pixels), got {text!r}")
    h = int(match.group(1))
    return h, int(match.group(2) or h)


def _sibling(path: Path, suffix: str) -> Path:
    """``a/b.ome.zarr`` -> ``a/b_gt.ome.zarr``: insert ``suffix`` before the extensions."""
    name = path.name
    for ext in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(ext):
            return path.with_name(name[: -len(ext)] + suffix + name[-len(ext) :])
    return path.with_name(name + suffix)


def _check_free(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise TilesrError(f"output exists: {path} (use --overwrite to replace it)")


@click.command(
    "simulate",
    epilog="""\b
Examples:
  tilesr simulate data/sim --pairs 400 --test 20 --size 256 --scale 2 --seed 0
  tilesr simulate slide.ome.zarr --large 8192 --scale 2 --noise-level 3
  tilesr simulate pair.tif --from-image sim_microtubules_1004.tif --scale 2 --noise-level 5
""",
)
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--pairs",
    "n_train",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Training pairs (dataset mode).",
)
@click.option(
    "--test",
    "n_test",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Test structures, written at every level (dataset mode).",
)
@click.option(
    "--size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="HR side of each pair in pixels (dataset mode).",
)
@click.option(
    "--scale",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Resolution factor from LR to HR.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--levels",
    default="1-9",
    show_default=True,
    help="Noise levels of the dataset (1 = noisiest, 9 = cleanest), e.g. 1-9 or 2,5,8.",
)
@click.option(
    "--large",
    metavar="N|HxW",
    default=None,
    help="Write one large LR image of this HR size to OUT (OME-Zarr, axes yx).",
)
@click.option(
    "--from-image",
    "from_image",
    type=click.Path(path_type=Path),
    default=None,
    help="Degrade this real HR TIFF into an LR image OUT (TIFF).",
)
@click.option(
    "--noise-level",
    type=click.IntRange(1, 9),
    default=5,
    show_default=True,
    help="Noise level of --large and --from-image (1 = noisiest).",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="HR chunk side for --large.",
)
@click.option(
    "--gt",
    "gt_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the HR ground truth goes (default: OUT with _gt before the extension).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing output.")
def command(
    out: Path,
    n_train: int,
    n_test: int,
    size: int,
    scale: int,
    seed: int,
    levels: str,
    large: str | None,
    from_image: Path | None,
    noise_level: int,
    chunk: int,
    gt_path: Path | None,
    overwrite: bool,
) -> None:
    """Simulate widefield (LR) / SIM-like (HR) fluorescence pairs.

    \b
    Three modes:
      default        a BioSR-layout dataset in folder OUT: training_wf/, training_gt/,
                     test_wf/level_01..09/, test_gt/ (float32 TIFFs)
      --large N      one N x N (or HxW) HR-pixel image, built chunk by chunk: the
                     noisy LR to OUT (.ome.zarr) and the clean HR next to it
      --from-image   the widefield forward model applied to a real HR image: LR to
                     OUT (.tif), the (clipped) HR next to it
    """
    if large is not None and from_image is not None:
        raise TilesrError("use either --large or --from-image, not both")
    if large is not None:
        _large(out, gt_path, _parse_shape(large), scale, noise_level, seed, chunk, overwrite)
    elif from_image is not None:
        _from_image(out, gt_path, from_image, scale, noise_level, seed, overwrite)
    else:
        from tilesr.simulate import write_biosr_dataset

        if gt_path is not None:
            raise TilesrError("--gt applies to --large and --from-image only")
        root = write_biosr_dataset(
            out,
            n_train=n_train,
            n_test=n_test,
            size=size,
            scale=scale,
            levels=_parse_levels(levels),
            seed=seed,
            overwrite=overwrite,
            progress=True,
        )
        click.echo(f"wrote {n_train} training pairs and {n_test} test images to {root}")


def _large(
    out: Path,
    gt_path: Path | None,
    shape: tuple[int, int],
    scale: int,
    noise_level: int,
    seed: int,
    chunk: int,
    overwrite: bool,
) -> None:
    if not out.name.lower().endswith(".zarr"):
        raise TilesrError(f"--large writes OME-Zarr: OUT must end in .ome.zarr, got {out}")
    gt = _sibling(out, "_gt") if gt_path is None else gt_path
    if gt.resolve() == out.resolve():
        raise TilesrError(f"ground truth path equals the output path: {gt}")
    _check_free(out, overwrite)
    _check_free(gt, overwrite)

    from tilesr.io import write_ome_zarr
    from tilesr.simulate import HR_PIXEL_UM, simulate_large

    lr, hr = simulate_large(shape, scale=scale, noise_level=noise_level, seed=seed, chunk=chunk)
    settings = {"shape_hr": list(shape), "scale": scale, "noise_level": noise_level, "seed": seed}
    for path, image, pixel, role in (
        (out, lr, HR_PIXEL_UM * scale, "lr"),
        (gt, hr, HR_PIXEL_UM, "hr"),
    ):
        write_ome_zarr(
            path,
            image,
            axes="yx",
            pixel_sizes={"y": pixel, "x": pixel},
            units={"y": "micrometer", "x": "micrometer"},
            overwrite=overwrite,
            attrs={"tilesr_simulate": {**settings, "role": role}},
            progress=True,
        )
    click.echo(f"wrote LR {lr.shape} to {out} and HR {hr.shape} to {gt}")


def _from_image(
    out: Path,
    gt_path: Path | None,
    source: Path,
    scale: int,
    noise_level: int,
    seed: int,
    overwrite: bool,
) -> None:
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise TilesrError(f"--from-image writes TIFF: OUT must end in .tif, got {out}")
    if not source.is_file():
        raise TilesrError(f"image not found: {source}")
    gt = _sibling(out, "_gt") if gt_path is None else gt_path
    if gt.resolve() == out.resolve():
        raise TilesrError(f"ground truth path equals the output path: {gt}")
    _check_free(out, overwrite)
    _check_free(gt, overwrite)

    import tifffile

    from tilesr.simulate import degrade

    try:
        image = tifffile.imread(source)
    except Exception as exc:  # tifffile raises several types for bad files
        raise TilesrError(f"cannot read {source}: {exc}") from exc
    pair = degrade(image, scale=scale, noise_level=noise_level, seed=seed, name=source.stem)
    out.parent.mkdir(parents=True, exist_ok=True)
    gt.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(out, pair.lr)
    tifffile.imwrite(gt, pair.hr)
    click.echo(f"wrote LR {pair.lr.shape} to {out} and HR {pair.hr.shape} to {gt}")
