"""``tilesr export``: convert a training checkpoint to an ONNX model for the engine."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option(
    "--opset", type=click.IntRange(min=17), default=17, show_default=True, help="ONNX opset."
)
@click.option(
    "--strength",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="Default sampling strength recorded in the model (see `tilesr restore --strength`).",
)
def command(
    checkpoint: Path, out: Path, overwrite: bool, opset: int, strength: float | None
) -> None:
    """Export the EMA weights of CHECKPOINT to OUT.onnx, with metadata and a parity check."""
    try:
        from tilesr.export.onnx_export import export_onnx
    except ImportError as exc:  # torch / onnx are the `train` extra
        raise click.ClickException(
            f"tilesr export needs the train extra (pip install 'tilesr[train]'): {exc}"
        ) from None
    click.echo(f"exporting {checkpoint} -> {out} (opset {opset})", err=True)
    report = export_onnx(checkpoint, out, overwrite=overwrite, opset=opset, strength=strength)
    click.echo(f"wrote {report.path}")
    click.echo(f"parity max abs diff (ONNX Runtime vs PyTorch): {report.max_abs_diff:.3g}")
    click.echo(f"weights sha256: {report.weights_sha256}")
