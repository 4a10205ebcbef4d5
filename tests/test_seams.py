"""No visible seams on a real image with fused sampling; the metric does see real seams."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from tilesr.engine import restore
from tilesr.options import RestoreOptions
from tilesr.seams import seam_ratio, tile_edges

# rows 200:456, columns 400:656 of BPAE_actin.tif (BioImageAnalysisNotebooks, CC-BY 4.0),
# shipped with the tests: see tests/assets/README.md
ACTIN_CROP = Path(__file__).resolve().parent / "assets" / "bpae_actin_crop.tif"


@pytest.fixture(scope="module")
def actin():
    tifffile = pytest.importorskip("tifffile")
    return tifffile.imread(ACTIN_CROP).astype(np.float32)


def _ratio(models, image, *, fuse, overlap):
    res = restore(
        da.from_array(image),
        models["spatial1"],
        RestoreOptions(steps=10, fuse=fuse, overlap=overlap),
    )
    edges = tile_edges(image.shape[0], res.plan.tile_size, overlap)
    return seam_ratio(res.image.compute(), edges, edges)


def test_fused_sampling_leaves_no_seams(models, actin):
    assert _ratio(models, actin, fuse="step", overlap=8) == pytest.approx(1.0, abs=0.02)


def test_tiles_without_overlap_show_seams(models, actin):
    # the zero padding of the network at each tile edge shows when nothing blends it away
    assert abs(_ratio(models, actin, fuse="final", overlap=0) - 1.0) > 0.1
