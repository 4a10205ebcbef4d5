"""Public datasets by name: fetch them into a cache folder, find them, resolve ``data:`` paths.

A config may name a file of a public dataset as ``data:NAME/PATH`` (``data:NAME``: the
dataset's folder), e.g. ``data:bpae/BPAE_actin.tif`` or ``data:w2s``; the datasets and
their pinned sources are in :mod:`tilesr.data.registry`. Such a path resolves to the
first complete copy of the dataset (every file of its manifest present) found in

1. ``$TILESR_DATA/NAME`` when the environment variable is set (or ``cache_dir``);
2. ``shared/data/NAME`` in the config's folder or any folder above it: the developer and
   CI layout, a ``shared/`` folder beside the checkout (``../shared/data``);
3. ``NAME`` in the user cache folder (``pooch.os_cache("tilesr")``, e.g.
   ``~/.cache/tilesr``) when ``TILESR_DATA`` is not set.

Nothing is downloaded while a config is read; :func:`fetch_dataset` (``tilesr data
fetch NAME``) and :func:`fetch_referenced` (``tilesr train``, on first use) download into
``$TILESR_DATA`` or the user cache. Downloads go to a scratch folder first and are moved
into place only after their sha256 matched, so the cache never holds a partial or
corrupt file; a file already there that does not match is an error, never overwritten.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tilesr.data.registry import Dataset, Registry, RemoteFile, default_registry
from tilesr.errors import TilesrError, first_line
from tilesr.io.checksum import file_sha256

ENV_VAR = "TILESR_DATA"
SCHEME = "data:"
_log = logging.getLogger("tilesr")


@dataclass(frozen=True)
class DatasetStatus:
    """Where a dataset is on this machine."""

    dataset: Dataset
    cache_folder: Path  # where ``tilesr data fetch`` puts it
    cached_files: int  # how many of its files are in cache_folder
    local_copies: tuple[Path, ...]  # complete copies, in search order

    @property
    def cached(self) -> bool:
        return self.cached_files == len(self.dataset.files)


def default_cache_dir() -> Path:
    """``$TILESR_DATA`` if it is set, else the user cache folder for tilesr."""
    explicit = _env_cache_dir()
    if explicit is not None:
        return explicit
    import pooch

    return Path(pooch.os_cache("tilesr"))


def get_dataset(name: str, registry: Registry | None = None) -> Dataset:
    """The dataset called ``name``; an unknown name is an error listing the known ones."""
    registry = default_registry() if registry is None else registry
    if name not in registry:
        raise TilesrError(f"unknown dataset {name!r} (known: {', '.join(sorted(registry))})")
    return registry[name]


def parse_reference(ref: str, registry: Registry | None = None) -> tuple[str, str]:
    """``data:NAME/PATH`` -> ``(NAME, PATH)`` (PATH may be empty); NAME must be known."""
    if not ref.startswith(SCHEME):
        raise TilesrError(f"not a dataset path (data:NAME/PATH): {ref!r}")
    name, _, inner = ref.removeprefix(SCHEME).partition("/")
    get_dataset(name, registry)
    parts = PurePosixPath(inner).parts
    if inner.startswith("/") or "\\" in inner or ".." in parts:
        raise TilesrError(f"{ref!r}: the path inside a dataset must be relative and stay in it")
    return name, "/".join(parts)


def data_roots(
    *, base_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> list[Path]:
    """Folders searched for ``NAME/``, in order (see the module docstring)."""
    explicit = Path(cache_dir).expanduser() if cache_dir is not None else _env_cache_dir()
    shared = []
    if base_dir is not None:
        start = Path(base_dir).resolve()
        shared = [folder / "shared" / "data" for folder in (start, *start.parents)]
    if explicit is not None:
        return [explicit, *shared]
    return [*shared, default_cache_dir()]


def local_copies(
    name: str,
    *,
    base_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    registry: Registry | None = None,
) -> list[Path]:
    """Complete copies of dataset ``name`` on this machine, best first (may be empty)."""
    dataset = get_dataset(name, registry)
    folders = (root / dataset.name for root in data_roots(base_dir=base_dir, cache_dir=cache_dir))
    complete = (f.resolve() for f in folders if _complete(dataset, f))
    return list(dict.fromkeys(complete))


def resolve_reference(
    ref: str,
    *,
    base_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    registry: Registry | None = None,
) -> Path:
    """The local path of ``data:NAME/PATH``; never downloads (see :func:`fetch_dataset`)."""
    name, inner = parse_reference(ref, registry)
    copies = local_copies(name, base_dir=base_dir, cache_dir=cache_dir, registry=registry)
    if not copies:
        raise TilesrError(
            f"dataset {name!r} is not on this machine: fetch it with `tilesr data fetch {name}` "
            f"(or set {ENV_VAR} to a folder holding {name}/)"
        )
    path = copies[0] / inner if inner else copies[0]
    if not path.exists():
        raise TilesrError(f"{ref!r}: dataset {name!r} has no {inner!r} (looked in {copies[0]})")
    return path


def dataset_status(
    *,
    base_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    registry: Registry | None = None,
) -> list[DatasetStatus]:
    """Every registered dataset with what of it is cached and where complete copies are."""
    registry = default_registry() if registry is None else registry
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    statuses = []
    for name in sorted(registry):
        dataset = registry[name]
        folder = root / name
        cached = sum((folder / f.path).is_file() for f in dataset.files)
        copies = local_copies(name, base_dir=base_dir, cache_dir=cache_dir, registry=registry)
        statuses.append(DatasetStatus(dataset, folder, cached, tuple(copies)))
    return statuses


def fetch_dataset(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    registry: Registry | None = None,
    progress: bool = True,
) -> Path:
    """Download the files of dataset ``name`` that the cache lacks; its cache folder.

    Parameters
    ----------
    name
        A registered dataset (``tilesr data list``).
    cache_dir
        The cache root; default ``$TILESR_DATA`` or the user cache folder.
    registry
        The datasets to choose from (default: :func:`~tilesr.data.registry.default_registry`).
    progress
        Show a progress bar (bytes of the whole dataset) on stderr.

    Returns
    -------
    Path
        ``cache_dir/name``, holding every file of the dataset, each checked by sha256.
    """
    dataset = get_dataset(name, registry)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / dataset.name
    missing = [f for f in dataset.files if not _verified(dataset, f, folder)]
    if not missing:
        return folder
    from tqdm import tqdm

    try:
        root.mkdir(parents=True, exist_ok=True)
        scratch_dir = tempfile.TemporaryDirectory(prefix=".fetch-", dir=root)
    except OSError as exc:
        raise TilesrError(f"cannot write the data cache {root}: {exc.strerror}") from None
    total = sum(f.size for f in missing)
    bar = tqdm(
        total=total, unit="B", unit_scale=True, desc=f"fetching {name}", disable=not progress
    )
    with scratch_dir as scratch, _quiet_pooch(), bar:
        for remote in missing:
            _fetch_file(dataset, remote, folder, Path(scratch))
            bar.update(remote.size)
    return folder


def fetch_referenced(
    config: Any,
    *,
    base_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    registry: Registry | None = None,
    progress: bool = True,
) -> list[Path]:
    """Fetch each dataset that a parsed config names as ``data:...`` and that is not here.

    Says so in one line per dataset (logger ``tilesr``); returns the fetched folders.
    """
    registry = default_registry() if registry is None else registry
    names = dict.fromkeys(parse_reference(ref, registry)[0] for ref in _references(config))
    fetched = []
    for name in names:
        if local_copies(name, base_dir=base_dir, cache_dir=cache_dir, registry=registry):
            continue
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        size = format_size(registry[name].size)
        _log.warning(
            "dataset %r is not on this machine: fetching it (%s) into %s", name, size, root
        )
        fetched.append(fetch_dataset(name, cache_dir=root, registry=registry, progress=progress))
    return fetched


def format_size(size: int) -> str:
    """Bytes in the largest unit that keeps the number at least 1 (decimal units)."""
    value, unit = float(size), "B"
    for larger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


# --------------------------------------------------------------------------- helpers


def _env_cache_dir() -> Path | None:
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


def _complete(dataset: Dataset, folder: Path) -> bool:
    return folder.is_dir() and all((folder / f.path).is_file() for f in dataset.files)


def _references(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML structure that is a ``data:`` path."""
    if isinstance(node, str) and node.startswith(SCHEME):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _references(value)


def _verified(dataset: Dataset, remote: RemoteFile, folder: Path) -> bool:
    """True if the file is cached and intact; a different file there is an error."""
    path = folder / remote.path
    if not path.exists():
        return False
    if not path.is_file() or file_sha256(path) != remote.sha256:
        raise TilesrError(
            f"dataset {dataset.name!r}: {path} is not the registered file (sha256 differs); "
            "it was not overwritten: move or delete it to fetch the dataset again"
        )
    return True


def _fetch_file(dataset: Dataset, remote: RemoteFile, folder: Path, scratch: Path) -> None:
    """Download (and extract) one file into scratch, check it, then move it into place."""
    label = f"dataset {dataset.name!r}: {remote.path}"
    if remote.member is None:
        got = _retrieve(remote.url, remote.sha256, scratch / "download", dataset.name, label)
    else:
        if remote.archive_sha256 is None:
            raise TilesrError(f"{label}: the registry gives no sha256 for the archive {remote.url}")
        archive = _retrieve(
            remote.url, remote.archive_sha256, scratch / "archive", dataset.name, label
        )
        got = _extract(archive, remote.member, scratch / "unzipped", label)
        if file_sha256(got) != remote.sha256:
            raise TilesrError(
                f"{label}: {remote.member} in {remote.url} does not match its registered "
                "sha256; nothing was kept"
            )
    target = folder / remote.path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(got, target)  # same file system (scratch is in the cache root): atomic
    except OSError as exc:
        raise TilesrError(f"{label}: cannot write {target}: {exc.strerror}") from None


def _retrieve(url: str, sha256: str, dest: Path, name: str, label: str) -> Path:
    import pooch
    import requests

    file_name = url.rsplit("/", 1)[-1].split("?", 1)[0] or "download"
    try:
        path = pooch.retrieve(
            url,
            known_hash=f"sha256:{sha256}",
            fname=file_name,
            path=dest,
            downloader=_downloader(url),
            progressbar=False,
        )
    except ValueError as exc:
        if "hash" not in str(exc):  # not pooch's checksum mismatch
            raise TilesrError(f"{label}: {url}: {first_line(exc)}") from None
        # pooch has deleted the download
        raise TilesrError(
            f"{label}: the file at {url} does not match its registered sha256 "
            f"{sha256[:12]}...; the download was deleted"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise TilesrError(f"{label}: could not download {url}: {_reason(exc, name)}") from None
    except OSError as exc:
        raise TilesrError(f"{label}: cannot write {dest}: {exc.strerror}") from None
    return Path(path)


def _extract(archive: Path, member: str, dest: Path, label: str) -> Path:
    import zipfile

    import pooch

    try:
        pooch.Unzip(members=[member], extract_dir=str(dest))(str(archive), "download", None)
    except zipfile.BadZipFile:
        raise TilesrError(f"{label}: {archive.name} is not a zip archive") from None
    path = dest / member
    if not path.is_file():
        raise TilesrError(f"{label}: {archive.name} has no member {member!r}")
    return path


def _downloader(url: str) -> Callable[[str, str, Any], None]:
    if url.startswith("pip:"):
        _wheel_target_args(url.rsplit("/", 1)[-1])  # a bad pin fails before pip runs
        return _pip_download
    if url.startswith(("https://", "http://")):
        import pooch

        downloader: Callable[[str, str, Any], None] = pooch.HTTPDownloader(
            progressbar=False, timeout=60
        )
        return downloader
    raise TilesrError(f"unsupported dataset source {url!r} (https://... or pip:...)")


def _pip_download(url: str, output_file: str, _pooch: Any = None) -> None:
    """pooch downloader for ``pip:REQUIREMENT/WHEEL``: pip fetches the pinned wheel by name.

    pip, not a hard-coded index address, so that the user's index settings (mirror,
    proxy, certificates) apply as for any install.
    """
    requirement, _, wheel = url.removeprefix("pip:").partition("/")
    with tempfile.TemporaryDirectory() as dest:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--only-binary=:all:", "--dest", dest, *_wheel_target_args(wheel), requirement]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else f"exit status {done.returncode}"
            raise TilesrError(f"pip could not download {requirement}: {reason}")
        got = Path(dest) / wheel
        if not got.is_file():
            found = ", ".join(sorted(p.name for p in Path(dest).iterdir())) or "nothing"
            raise TilesrError(f"pip downloaded {found} for {requirement}, not the pinned {wheel}")
        shutil.copyfile(got, output_file)


def _wheel_target_args(wheel: str) -> list[str]:
    """pip options selecting exactly this wheel's tags, whatever machine runs pip."""
    parts = wheel.removesuffix(".whl").split("-")
    if not wheel.endswith(".whl") or len(parts) not in (5, 6):
        raise TilesrError(f"not a wheel file name (NAME-VERSION-PY-ABI-PLATFORM.whl): {wheel!r}")
    python, abi, platforms = parts[-3:]
    if platforms == "any":
        return []
    args = [arg for platform in platforms.split(".") for arg in ("--platform", platform)]
    return [*args, "--implementation", python[:2], "--python-version", python[2:], "--abi", abi]


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs each download at INFO; one progress bar per dataset says enough."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _reason(exc: Exception, name: str) -> str:
    """A short why for a failed request (requests' own messages repeat the whole URL)."""
    import requests

    response = getattr(exc, "response", None)
    if isinstance(exc, requests.exceptions.HTTPError) and response is not None:
        return f"HTTP {response.status_code} {response.reason}"
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return (
            f"no connection; run `tilesr data fetch {name}` where the internet is reachable "
            f"and copy {name}/ into {ENV_VAR} (or ../shared/data) here"
        )
    return first_line(exc)
