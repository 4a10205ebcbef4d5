"""``tilesr restore``: restore an OME-Zarr / TIFF image or stack into an OME-Zarr or OME-TIFF.

Every option named like a field of :class:`~tilesr.options.RestoreOptions` goes into
that value, which checks it (one-line errors naming the value); choices come from the
same constants.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from tilesr.denoisers.onnx_backend import DEVICES
from tilesr.io.axes import ZARR_FORMATS
from tilesr.metadata import SAMPLE_NOISE, SAMPLERS
from tilesr.options import FUSE_MODES, NAN_POLICIES, OUTPUT_DTYPES, PLANE_NOISE, RestoreOptions


@click.command(
    "restore",
    epilog="""\b
Examples:
  # the bundled model, on this machine's cores
  tilesr restore slide.ome.zarr restored.ome.zarr
  # a z-stack into an OME-TIFF for Fiji or QuPath; 4 samples give an uncertainty
  tilesr restore stack.tif restored.ome.tif --axes zyx --samples 4
  # your own model on a running dask cluster (workers see the same shared paths)
  tilesr restore big.ome.zarr out.ome.zarr --model my.onnx --scheduler tcp://head:8786
  # continue a run that was interrupted, or check that it is complete
  tilesr restore big.ome.zarr out.ome.zarr --model my.onnx --resume
  # look at it: napari shows the restoration and (hidden) its uncertainty
  napari out.ome.zarr
""",
)
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
    type=int,
    default=None,
    help="Samples per pixel; the output is their mean (default: the model's).",
)
@click.option(
    "--steps",
    type=int,
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
    type=int,
    default=None,
    help="Tile edge in output pixels (default: the model's).",
)
@click.option(
    "--overlap",
    type=int,
    default=None,
    help="Tile overlap in output pixels (default: the model's).",
)
@click.option(
    "--context",
    type=int,
    default=None,
    help="Output pixels sampled around each block with --fuse step (default: the model's; "
    "one tile if it declares none).",
)
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help="Tiles per network call (default 8 on CPU, 32 on CUDA).",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="ONNX Runtime threads per block task (default: the cores divided by the workers).",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Where ONNX Runtime runs the network (auto: CUDA when available, else the CPU).",
)
@click.option(
    "--sample-noise",
    type=click.Choice(SAMPLE_NOISE),
    default=None,
    help="Noise of the samples: antithetic (pairs of opposite noise: their mean cancels most "
    "of the sampling variance) or independent (default: the model's).",
)
@click.option(
    "--consistency",
    type=float,
    default=None,
    metavar="SIGMA",
    help="Make every sample agree with the input, binned back to its grid, on scales "
    "above SIGMA input pixels (0: off; default: the model's). For targets with the "
    "input's optics and background, such as frame averages; not for deblurred ones.",
)
@click.option(
    "--plane-noise",
    type=click.Choice(PLANE_NOISE),
    default=PLANE_NOISE[0],
    show_default=True,
    help="Noise of a stack's planes: independent (keyed by plane) or shared (every plane "
    "gets the first plane's noise: smoothest through z, but an invented detail repeats).",
)
@click.option(
    "--block-size",
    type=int,
    default=None,
    help="Output block (chunk) edge in output pixels (default about 2048).",
)
@click.option(
    "--fuse",
    type=click.Choice(FUSE_MODES),
    default="step",
    show_default=True,
    help="Blend tiles at every step (seamless) or only at the end.",
)
@click.option(
    "--uncertainty/--no-uncertainty",
    default=None,
    help="Write the per-pixel std over samples (default: on when more than one sample).",
)
@click.option(
    "--strength",
    type=float,
    default=None,
    help="Start sampling at this fraction (0, 1] of the noise schedule from the noised "
    "input (1: from pure noise; default: the model's).",
)
@click.option(
    "--skip-background",
    type=float,
    default=None,
    metavar="THR",
    help="Skip tiles darker than THR (0 to 1) of the intensity range.",
)
@click.option(
    "--axes",
    default=None,
    help="Input axes, e.g. zyx or czyx (overrides the metadata; size-1 axes it names are kept).",
)
@click.option("--level", type=int, default=0, show_default=True, help="Pyramid level of the input.")
@click.option(
    "--dtype",
    type=click.Choice(OUTPUT_DTYPES),
    default="float32",
    show_default=True,
    help="Output pixel type (input: rounded and clipped, the uncertainty too).",
)
@click.option(
    "--zarr-format",
    type=click.Choice(ZARR_FORMATS),
    default=3,
    show_default=True,
    help="3: OME-NGFF 0.5; 2: OME-NGFF 0.4 (OME-Zarr outputs).",
)
@click.option(
    "--nan-policy",
    type=click.Choice(NAN_POLICIES),
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
@click.option(
    "--no-progress",
    is_flag=True,
    help="Hide the progress (a bar on a terminal, else a line every 5 % or 30 s).",
)
def command(
    input_path: Path,
    output_path: Path,
    model: Path | None,
    scheduler: str | None,
    overwrite: bool,
    resume: bool,
    no_progress: bool,
    **options: Any,
) -> None:
    """Restore INPUT (OME-Zarr, zarr or TIFF) into OUTPUT (OME-Zarr, or OME-TIFF if it
    ends in .tif/.tiff).

    The output is one multiscale image registered to the input (pixel sizes and
    stage position), with the input's axes; with an uncertainty (--samples > 1 or
    --uncertainty) its channel axis holds the restoration first, then the per-pixel
    uncertainty. The settings used are recorded in it. An interrupted run continues
    with --resume; only one run writes an output at a time.
    """
    from tilesr.restore_file import restore_file

    try:
        report = restore_file(
            input_path,
            output_path,
            restore_options(options),
            model=model,
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
    except KeyboardInterrupt:
        from tilesr.cli import INTERRUPTED

        click.echo(
            f"Error: interrupted; {output_path} is not finished (continue it with --resume)",
            err=True,
        )
        raise click.exceptions.Exit(INTERRUPTED) from None
    click.echo(report.summary())


def restore_options(values: dict[str, Any]) -> RestoreOptions:
    """The options value of the command's options named like its fields (it checks them)."""
    names = {f.name for f in fields(RestoreOptions)}
    unused = sorted(set(values) - names)
    if unused:  # an option added to the command but not to RestoreOptions
        raise TypeError(f"restore options without a RestoreOptions field: {unused}")
    return RestoreOptions(**values)
