"""``tilesr export``: convert a training checkpoint to an ONNX model for the engine."""

from __future__ import annotations

from pathlib import Path

import click

from tilesr.metadata import TARGET_OPTICS


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option(
    "--opset", type=click.IntRange(min=17), default=17, show_default=True, help="ONNX opset."
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Take the sampling defaults and uncertainty calibration from this training "
    "config's export section (chosen after training) instead of the checkpoint's.",
)
@click.option(
    "--target-optics",
    type=click.Choice(TARGET_OPTICS),
    default=None,
    help="For a network trained with data.target_optics: the target it restores to, "
    "'same' optics as the input (denoised, resampled), 'sharper' (SIM-like) or 'unknown' "
    "(the training mix's answer). Default: the config's, else the checkpoint's.",
)
def command(
    checkpoint: Path,
    out: Path,
    overwrite: bool,
    opset: int,
    config: Path | None,
    target_optics: str | None,
) -> None:
    """Export the EMA weights of CHECKPOINT to OUT.onnx, with metadata and a parity check.

    \b
    Examples:
      tilesr export runs/tiny/checkpoint.pt tiny.onnx
      tilesr export runs/bundled/best.pt model.onnx --config configs/bundled.yaml
      tilesr export runs/optics/best.pt same.onnx --target-optics same
    """
    try:
        from tilesr.export.onnx_export import export_defaults, export_onnx
    except ImportError as exc:  # torch / onnx are the `train` extra
        raise click.ClickException(
            f"tilesr export needs the train extra (pip install 'tilesr[train]'): {exc}"
        ) from None
    click.echo(f"exporting {checkpoint} -> {out} (opset {opset})", err=True)
    defaults = export_defaults(config) if config is not None else {}
    if target_optics is not None:
        defaults["target_optics"] = target_optics
    report = export_onnx(checkpoint, out, overwrite=overwrite, opset=opset, defaults=defaults)
    click.echo(f"wrote {report.path}")
    click.echo(f"parity max abs diff (ONNX Runtime vs PyTorch): {report.max_abs_diff:.3g}")
    click.echo(f"weights sha256: {report.weights_sha256}")
