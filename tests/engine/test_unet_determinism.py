"""The determinism claims hold for a real exported U-Net, not only the test graphs.

ONNX Runtime's CPU kernels (convolutions, GroupNorm, attention matmuls) give each batch
item the same bits whatever the batch size and the intra-op thread count; the engine
relies on that for results independent of ``batch_size`` and of the scheduler.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import dask.array as da
import numpy as np

from tests.model.tiny import tiny_checkpoint
from tilesr.engine import restore
from tilesr.export.onnx_export import export_onnx
from tilesr.options import RestoreOptions

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def unet_onnx(tmp_path_factory):
    root = tmp_path_factory.mktemp("unet")
    tiny_checkpoint(root / "tiny.pt")
    return export_onnx(root / "tiny.pt", root / "tiny.onnx").path


def test_unet_restore_is_bit_identical_across_batches_chunks_and_threads(unet_onnx):
    lr = np.random.default_rng(4).gamma(2.0, 100.0, (24, 30)).astype(np.float32)
    runs = [
        restore(
            da.from_array(lr, chunks=chunks),
            unet_onnx,
            RestoreOptions(steps=2, samples=2, batch_size=batch, block_size=32, threads=threads),
        ).image.compute()
        for chunks, batch, threads in [((24, 30), 8, 2), ((7, 11), 1, 1), ((13, 30), 3, 2)]
    ]
    assert np.isfinite(runs[0]).all()
    for other in runs[1:]:
        assert np.array_equal(runs[0], other)
