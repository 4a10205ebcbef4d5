"""The ``tilesr`` command line: thin commands that parse options and call one library function.

Each subcommand lives in its own module and imports heavy libraries (torch, dask,
onnxruntime) only when it runs, so ``tilesr --help`` stays fast and torch-free.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from tilesr import __version__
from tilesr.errors import TilesrError

#: exit status after Ctrl-C (128 + SIGINT)
INTERRUPTED = 130

# command name -> module holding a click command named ``command``
_COMMANDS = {
    "simulate": "tilesr.cli.simulate",
    "train": "tilesr.cli.train",
    "export": "tilesr.cli.export",
    "restore": "tilesr.cli.restore",
    "evaluate": "tilesr.cli.evaluate",
    "demo": "tilesr.cli.demo",
    "data": "tilesr.cli.data",
}


class _TilesrGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(module).command
        return command

    def invoke(self, ctx: click.Context) -> Any:
        _print_notices()
        try:
            return super().invoke(ctx)
        except TilesrError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            # Ctrl-C: one line and 128 + SIGINT, as shells expect
            click.echo("Error: interrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a test runner swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current sys.stderr


def _print_notices() -> None:
    """Library notices (logger ``tilesr``, warning and up) as one plain line each on stderr."""
    logger = logging.getLogger("tilesr")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("tilesr: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


@click.group(cls=_TilesrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tilesr")
def main() -> None:
    """Restore microscopy images with a conditional diffusion model.

    \b
    tilesr demo                      restore a simulated slide with the bundled model
    tilesr restore IN OUT            restore an OME-Zarr / TIFF image or stack
    tilesr simulate                  make training pairs or a large test image
    tilesr train --config C          train a model (needs the `train` extra)
    tilesr export CKPT OUT.onnx      convert a checkpoint for the engine
    tilesr evaluate PRED GT          image quality metrics as JSON
    tilesr data fetch NAME           download a public training dataset (data list)
    """
