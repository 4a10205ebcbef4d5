"""``tilesr data``: fetch the public datasets that the shipped configs train on, and list them."""

from __future__ import annotations

from pathlib import Path

import click

_CACHE_HELP = (
    "Cache folder (default: $TILESR_DATA, else the user cache folder, e.g. ~/.cache/tilesr)."
)


@click.group(
    "data",
    epilog="""\b
Examples:
  tilesr data list
  tilesr data fetch w2s bpae
  TILESR_DATA=/data/tilesr tilesr data fetch w2s

\b
Configs name dataset files as data:NAME/PATH (e.g. data:bpae/BPAE_actin.tif);
`tilesr train` fetches the ones this machine lacks.
""",
)
def command() -> None:
    """Fetch and list the public datasets (pinned URLs, sha256-checked, cached)."""


@command.command(
    "fetch",
    epilog="""\b
Examples:
  tilesr data fetch w2s
  tilesr data fetch sim_microtubules bpae confocal_sted --cache-dir /data/tilesr
""",
)
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help=_CACHE_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def fetch(names: tuple[str, ...], cache_dir: Path | None, quiet: bool) -> None:
    """Download datasets into the cache; prints each dataset's folder.

    Files already cached are checked and kept; each download is checked against its
    pinned sha256 before it enters the cache. `tilesr data list` shows the names.
    """
    from tilesr.data.fetch import fetch_dataset, get_dataset

    for name in names:  # every name checked before the first download
        get_dataset(name)
    for name in names:
        click.echo(str(fetch_dataset(name, cache_dir=cache_dir, progress=not quiet)))


@command.command(
    "list",
    epilog="""\b
Examples:
  tilesr data list
  tilesr data list --cache-dir /data/tilesr
""",
)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help=_CACHE_HELP)
def list_(cache_dir: Path | None) -> None:
    """Show each dataset's name, size, licence, source and whether it is cached."""
    from tilesr.data.fetch import dataset_status, format_size

    for status in dataset_status(base_dir=Path.cwd(), cache_dir=cache_dir):
        dataset, n_files = status.dataset, len(status.dataset.files)
        if status.cached:
            state = f"cached in {status.cache_folder}"
        elif status.cached_files:
            state = (
                f"partly cached ({status.cached_files}/{n_files} files) in {status.cache_folder}"
            )
        else:
            state = "not cached"
        elsewhere = [p for p in status.local_copies if p != status.cache_folder.resolve()]
        if elsewhere:
            state += f"; a complete copy is at {elsewhere[0]}"
        files = f"{n_files} file" if n_files == 1 else f"{n_files} files"
        click.echo(f"{dataset.name}  {format_size(dataset.size)}, {files}: {state}")
        click.echo(f"    {dataset.title}")
        click.echo(f"    licence: {dataset.licence}; source: {dataset.source}")
