"""``tilesr restore``: restore an OME-Zarr / TIFF image or stack into an OME-Zarr."""

from __future__ import annotations

from pathlib import Path

import click

from tilesr.metadata import SAMPLERS


@click.command("restore")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUTPUT", type=click.Path(path_type=Path))
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="Exported .onnx model (default: the bundled model, when installed).",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=None,
    help="Samples per pixel; the output is their mean (default: the model's).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Sampler steps, network calls per sample (default: the model's).",
)
@click.option(
    "--sampler",
    type=click.Choice(SAMPLERS),
    default=None,
    help="Reverse-diffusion sampler (default: the model's).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise.")
@click.option(
    "--tile-size",
    type=click.IntRange(min=8),
    default=None,
    help="Tile edge in output pixels (default: the model's).",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=None,
    help="Tile overlap in output pixels (default: the model's).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Tiles per network call (default 8 on CPU, 32 on GPU).",
)
@click.option(
    "--block-size",
    type=click.IntRange(min=8),
    default=None,
    help="Output block (chunk) edge in output pixels (default about 2048).",
)
@click.option(
    "--fuse",
    type=click.Choice(["step", "final"]),
    default="step",
    show_default=True,
    help="Blend tiles at every step (seamless) or only at the end.",
)
@click.option(
    "--uncertainty/--no-uncertainty",
    default=None,
    help="Write the per-pixel std over samples (default: on when --samples > 1).",
)
@click.option(
    "--strength",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="Start sampling at this fraction of the noise schedule from the noised input "
    "(1: from pure noise; default: the model's).",
)
@click.option(
    "--skip-background",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    metavar="THR",
    help="Skip tiles darker than THR of the intensity range.",
)
@click.option("--axes", default=None, help="Input axes, e.g. zyx (overrides the metadata).")
@click.option(
    "--level",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Pyramid level of the input.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "input"]),
    default="float32",
    show_default=True,
    help="Output pixel type (input: rounded and clipped).",
)
@click.option(
    "--zarr-format",
    type=click.Choice(["2", "3"]),
    default="3",
    show_default=True,
    help="3: OME-NGFF 0.5; 2: OME-NGFF 0.4.",
)
@click.option(
    "--nan-policy",
    type=click.Choice(["refuse", "zero", "mean"]),
    default="refuse",
    show_default=True,
    help="What to do with NaN/inf input pixels.",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS|local-cluster:N",
    help="dask scheduler address or local-cluster:N (default: local threads).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run into OUTPUT.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def command(
    input_path: Path,
    output_path: Path,
    model: Path | None,
    samples: int | None,
    steps: int | None,
    sampler: str | None,
    seed: int,
    tile_size: int | None,
    overlap: int | None,
    batch_size: int | None,
    block_size: int | None,
    fuse: str,
    uncertainty: bool | None,
    skip_background: float | None,
    strength: float | None,
    axes: str | None,
    level: int,
    dtype: str,
    zarr_format: str,
    nan_policy: str,
    scheduler: str | None,
    overwrite: bool,
    resume: bool,
    no_progress: bool,
) -> None:
    """Restore INPUT (OME-Zarr, zarr or TIFF) into the OME-Zarr OUTPUT.

    The output holds the restored multiscale image, an ``uncertainty`` image when
    requested, and the settings used. An interrupted run continues with --resume.
    """
    from tilesr.restore_file import restore_file

    try:
        report = restore_file(
            input_path,
            output_path,
            model=model,
            axes=axes,
            level=level,
            samples=samples,
            steps=steps,
            sampler=sampler,
            seed=seed,
            tile_size=tile_size,
            overlap=overlap,
            batch_size=batch_size,
            block_size=block_size,
            fuse=fuse,
            uncertainty=uncertainty,
            skip_background=skip_background,
            strength=strength,
            nan_policy=nan_policy,
            dtype=dtype,
            zarr_format=int(zarr_format),
            scheduler=scheduler,
            overwrite=overwrite,
            resume=resume,
            progress=not no_progress,
        )
    except OSError as exc:
        # a full disk, a read-only or vanished folder: name it in one line, no traceback
        where = f": {exc.filename}" if exc.filename else ""
        raise click.ClickException(
            f"I/O error while restoring into {output_path}: {exc.strerror or exc}{where} "
            "(the input is never written; an interrupted output continues with --resume)"
        ) from None
    click.echo(report.summary())
