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
    keep them small); of a `tilesr restore` output, its restoration is compared (not the
    uncertainty channels). Leading axes (z, c, t) are planes whose metrics are averaged.
    An infinite PSNR (identical images) is printed as null.
    """
    from tilesr.metrics import image_metrics, normalize_pair

    if data_range is not None and normalize != "none":
        raise TilesrError(f"--data-range applies only to --normalize none, not {normalize!r}")
    p, g = _read(pred), _read(gt)
    if p.shape != g.shape:
        raise TilesrError(f"PRED and GT shapes differ: {p.shape} ({pred}) versus {g.shape} ({gt})")
    pair = normalize_pair(p, g, mode=normalize)
    metrics = image_metrics(pair.pred, pair.gt, data_range=data_range or pair.data_range)
    values = {k: (v if math.isfinite(v) else None) for k, v in metrics.as_dict().items()}
    click.echo(json.dumps(values))


def _read(path: Path) -> NDArray[Any]:
    """Level 0 of an image (of a tilesr output: its restoration), fully in memory."""
    import numpy as np

    from tilesr.io import open_image, open_restored
    from tilesr.io.restored import is_restored_output

    if is_restored_output(path):
        return np.asarray(open_restored(path).image.compute())
    return np.asarray(open_image(path).data.compute())
