"""``tilesr train``: train a model from a YAML config (needs the ``train`` extra)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import click

from tilesr.errors import TilesrError


@click.command(
    "train",
    epilog="""\b
Examples:
  tilesr train --config configs/tiny.yaml --output-dir runs/tiny
  tilesr train --config configs/bundled.yaml    (fetches its public data on first use)
  tilesr train --config configs/default.yaml --resume
""",
)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Training config (YAML); see configs/default.yaml.",
)
@click.option("--resume", is_flag=True, help="Continue from OUTPUT_DIR/checkpoint.pt.")
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Override the config's output_dir.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Override training.steps (with --resume: extend a finished run to this many).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(
    config_path: Path, resume: bool, output_dir: Path | None, steps: int | None, quiet: bool
) -> None:
    """Train a conditional diffusion model; writes checkpoint.pt, logs and plots.

    The output folder gets checkpoint.pt (export it with `tilesr export`), loss.csv,
    metrics.csv, curves.png and examples.png. Datasets the config names as
    data:NAME/... and this machine lacks are fetched first (see `tilesr data list`).
    """
    if importlib.util.find_spec("torch") is None:
        raise TilesrError("training needs the train extra: pip install 'tilesr[train]'")
    from tilesr.training.config import load_config
    from tilesr.training.trainer import train

    config = load_config(config_path, fetch_missing=True).with_overrides(
        steps=steps, output_dir=output_dir
    )
    result = train(config, resume=resume, progress=not quiet)
    summary = {
        "checkpoint": str(result.checkpoint),
        "step": result.step,
        "loss": result.loss,
        "metrics": result.metrics.as_dict() if result.metrics is not None else None,
        "seconds": round(result.seconds, 1),
    }
    click.echo(json.dumps(summary))
