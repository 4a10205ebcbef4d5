"""``tilesr evaluate``: image quality of a restoration against its ground truth, as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tilesr.errors import TilesrError

if TYPE_CHECKING:
    from numpy.typing import NDArray


@click.command(
    "evaluate",
    epilog="""\b
Examples:
  tilesr evaluate restored.ome.zarr slide_gt.ome.zarr
  tilesr evaluate pred.tif gt.tif --normalize none --data-range 2
""",
)
@click.argument("pred", type=click.Path(path_type=Path))
@click.argument("gt", type=click.Path(path_type=Path))
@click.option(
    "--normalize",
    type=click.Choice(["match", "percentile", "none"]),
    default="match",
    show_default=True,
    help=(
        "match: percentile-normalise GT (0.1/99.9 to 0/1) and fit PRED to it by least-squares "
        "scale and offset, as in CARE's evaluation (fair across intensity scales); "
        "percentile: normalise each image by its own percentiles; none: raw intensities."
    ),
)
@click.option(
    "--data-range",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Dynamic range for SSIM/PSNR with --normalize none (default: GT max - min).",
)
def command(pred: Path, gt: Path, normalize: str, data_range: float | None) -> None:
    """Print SSIM, MS-SSIM, PSNR, MAE and NRMSE of PRED against GT as JSON.

    PRED and GT are TIFF or OME-Zarr images of equal shape (level 0 is read whole, so
    keep them small); of a `tilesr restore` output, its restoration is compared. Leading
    axes (z, c, t) are planes whose metrics are averaged. An infinite PSNR (identical
    images) is printed as null.

    Of a `tilesr restore` output with an uncertainty, also how well it predicts the
    actual error, on the same intensity scale: cover_1sigma and cover_2sigma (the
    fraction of pixels within 1 and 2 predicted sigma of GT; 0.683 and 0.954 if
    calibrated) and spearman_patch (rank correlation of RMS error and RMS sigma over
    16x16 patches).
    """
    from tilesr.metrics import image_metrics, normalize_pair

    if data_range is not None and normalize != "none":
        raise TilesrError(f"--data-range applies only to --normalize none, not {normalize!r}")
    (p, sigma), g = _read_prediction(pred), _read(gt)
    if p.shape != g.shape:
        raise TilesrError(f"PRED and GT shapes differ: {p.shape} ({pred}) versus {g.shape} ({gt})")
    pair = normalize_pair(p, g, mode=normalize)
    metrics = image_metrics(pair.pred, pair.gt, data_range=data_range or pair.data_range)
    values = metrics.as_dict()
    if sigma is not None:
        values.update(_calibration(pair.gt - pair.pred, sigma * abs(pair.pred_scale)))
    click.echo(json.dumps({k: (v if math.isfinite(v) else None) for k, v in values.items()}))


def _calibration(error: NDArray[Any], sigma: NDArray[Any]) -> dict[str, float]:
    """Coverage and patch rank correlation over the planes of (..., H, W) arrays."""
    from tilesr.calibration import calibration, calibration_terms

    h, w = error.shape[-2:]
    planes = zip(error.reshape(-1, h, w), sigma.reshape(-1, h, w), strict=True)
    return calibration([calibration_terms(e, s) for e, s in planes])


def _read_prediction(path: Path) -> tuple[NDArray[Any], NDArray[Any] | None]:
    """Level 0 of PRED and, of a tilesr output that has one, its uncertainty."""
    import numpy as np

    from tilesr.io import open_restored
    from tilesr.io.restored import is_restored_output

    if not is_restored_output(path):
        return _read(path), None
    restored = open_restored(path)
    sigma = restored.uncertainty
    return (
        np.asarray(restored.image.compute()),
        None if sigma is None else np.asarray(sigma.compute()),
    )


def _read(path: Path) -> NDArray[Any]:
    """Level 0 of an image (of a tilesr output: its restoration), fully in memory."""
    import numpy as np

    from tilesr.io import open_image, open_restored
    from tilesr.io.restored import is_restored_output

    if is_restored_output(path):
        return np.asarray(open_restored(path).image.compute())
    return np.asarray(open_image(path).data.compute())
