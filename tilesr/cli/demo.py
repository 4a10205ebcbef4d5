"""``tilesr demo``: the one-command tour (simulate, restore with the bundled model, plot)."""

from __future__ import annotations

from pathlib import Path

import click

from tilesr.metadata import SAMPLERS


@click.command("demo")
@click.argument("out_dir", type=click.Path(path_type=Path), default="tilesr-demo")
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="ONNX model (default: the bundled model).",
)
@click.option(
    "--size",
    type=click.IntRange(64, 16384),
    default=1024,
    show_default=True,
    help="Side of the restored image in output pixels (the input is size/scale).",
)
@click.option(
    "--samples",
    type=click.IntRange(1, 64),
    default=None,
    help="Samples averaged per pixel; their spread is the uncertainty (default: the model's).",
)
@click.option(
    "--steps",
    type=click.IntRange(1, 10000),
    default=None,
    help="Network evaluations per sample (default: the model's).",
)
@click.option(
    "--sampler",
    type=click.Choice(SAMPLERS),
    default=None,
    help="Reverse-diffusion sampler (default: the model's).",
)
@click.option(
    "--noise-level",
    type=click.IntRange(1, 9),
    default=5,
    show_default=True,
    help="Simulated photon level: 1 noisiest, 9 cleanest.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--scheduler",
    default=None,
    help="Dask scheduler: an address, or local-cluster:N (default: local threads).",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier demo in OUT_DIR.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def command(
    out_dir: Path,
    model: Path | None,
    size: int,
    samples: int | None,
    steps: int | None,
    sampler: str | None,
    noise_level: int,
    seed: int,
    scheduler: str | None,
    overwrite: bool,
    no_progress: bool,
) -> None:
    """Restore a simulated widefield field of view with the bundled model.

    Writes to OUT_DIR (default ./tilesr-demo): the simulated input and ground truth,
    the restored OME-Zarr with its uncertainty, figure.png and metrics.json. Runs
    offline on the local threaded scheduler in a few minutes on 2 CPU cores.

    \b
    Examples:
      tilesr demo
      tilesr demo out --size 2048 --samples 4 --steps 20
    """
    from tilesr.demo import run_demo

    report = run_demo(
        out_dir,
        model=model,
        size=size,
        samples=samples,
        steps=steps,
        sampler=sampler,
        noise_level=noise_level,
        seed=seed,
        scheduler=scheduler,
        overwrite=overwrite,
        progress=not no_progress,
    )
    click.echo(report.summary())
