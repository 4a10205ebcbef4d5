"""The public datasets that ``tilesr data fetch`` knows, with pinned sources and checksums.

Each dataset is a folder of files; its manifest (``tilesr/data/manifests/NAME.txt``)
lists every file with its size, sha256 and source. The folder layout is that of the
developer copy in ``../shared/data/NAME`` beside a checkout, so a config's
``data:NAME/...`` path means the same file wherever the folder was found.

Where the pins come from (read before trusting a download):

* ``w2s``, ``sim_microtubules``, ``bpae``, ``confocal_sted`` are files in public GitHub
  repositories, pinned to a commit (``raw.githubusercontent.com/OWNER/REPO/COMMIT/PATH``).
  GitHub cannot be reached from the machine these pins were made on, so **none of
  these URLs was downloaded**: the repository paths were read from an index of the
  repositories, and the sha256 checksums are those of the developer copies in
  ``../shared/data``, which are the same files as far as we know (renamed; the renaming
  is in the manifests). If upstream differs, the fetch fails with a checksum error and
  keeps nothing. ``sim_microtubules`` is the least certain: its source is the only SIM
  microtubule sample in the ZS-DeconvNet repository, matched by content description.
* ``stardist_nuclei`` and ``flowdec_neuron`` are members of wheels on the Python package
  index, fetched with ``pip download`` by name and pinned version; the wheel's sha256 is
  the one the index publishes (a wheel downloaded with pip matched it) and the member's
  sha256 was computed from that wheel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from tilesr.errors import TilesrError


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its place in the dataset folder, size, sha256 and source."""

    path: str  # relative to the dataset folder, '/'-separated
    size: int
    sha256: str
    #: ``http(s)://...``, or ``pip:REQUIREMENT/WHEEL-FILENAME`` for a wheel on the
    #: package index (downloaded with ``pip download``)
    url: str
    #: the file inside the archive (zip or wheel) at ``url``; None: ``url`` is the file
    member: str | None = None
    archive_sha256: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A named public dataset: what it is, its licence, its source and its files."""

    name: str
    title: str
    licence: str
    source: str
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        """Total bytes of the files as they lie in the dataset folder."""
        return sum(f.size for f in self.files)


#: dataset name -> dataset; functions that take a registry accept any such mapping
Registry = Mapping[str, Dataset]

# name, title, licence, source (credit)
_INFO = (
    (
        "w2s",
        "W2S widefield pairs: single noisy frame vs 400-frame average, 40 fields x 3 channels",
        "not stated for the images (repository: GPL)",
        "W2S (Zhou et al. 2020, IVRL/EPFL), 8-bit copy in ND-HowardGroup/Instant-Image-Denoising",
    ),
    (
        "sim_microtubules",
        "one SIM reconstruction of microtubules, 1004x1004 float32",
        "not stated",
        "ZS-DeconvNet sample data (Qiao et al. 2024), TristaZeng/ZS-DeconvNet",
    ),
    (
        "bpae",
        "widefield BPAE cells, actin / mitochondria / nuclei, 680x1100 float32",
        "CC-BY 4.0",
        "haesleinhuepf/BioImageAnalysisNotebooks (Haase et al.)",
    ),
    (
        "confocal_sted",
        "confocal vs STED pairs: axonal F-actin rings and live F-actin",
        "BSD (repository LICENSE.txt)",
        "TA-GAN sample data (Bouchard et al. 2023), FLClab/TA-GAN",
    ),
    (
        "stardist_nuclei",
        "StarDist 2D sample image of nuclei (img2d.tif)",
        "BSD-3-Clause (stardist package)",
        "stardist 0.9.2 wheel on the Python package index (Schmidt, Weigert et al.)",
    ),
    (
        "flowdec_neuron",
        "widefield neuron z-stack, 50x256x256 float32 (neuron-25pct/data.tif)",
        "Apache-2.0 (flowdec package)",
        "flowdec 1.1.0 wheel on the Python package index (Czech et al.)",
    ),
)


def default_registry() -> dict[str, Dataset]:
    """The datasets shipped with tilesr, read from the manifests in the package."""
    folder = resources.files("tilesr.data") / "manifests"
    registry = {}
    for name, title, licence, source in _INFO:
        text = (folder / f"{name}.txt").read_text(encoding="utf-8")
        files = parse_manifest(text, where=f"manifest {name}.txt")
        registry[name] = Dataset(name, title, licence, source, files)
    return registry


def parse_manifest(text: str, *, where: str = "manifest") -> tuple[RemoteFile, ...]:
    """Files of a manifest: ``path size sha256 url [member archive_sha256]`` per line."""
    files = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (4, 6) or not fields[1].isdigit():
            raise TilesrError(f"{where} line {number}: expected 4 or 6 fields, got {line!r}")
        path, size, sha256, url, *archive = fields
        member, archive_sha256 = archive if archive else (None, None)
        for digest in (sha256, archive_sha256):
            if digest is not None and (len(digest) != 64 or set(digest) - set("0123456789abcdef")):
                raise TilesrError(f"{where} line {number}: not a sha256 digest: {digest!r}")
        files.append(RemoteFile(path, int(size), sha256, url, member, archive_sha256))
    return tuple(files)
