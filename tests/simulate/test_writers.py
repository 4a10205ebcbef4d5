from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from tilesr.data.datasets import load_biosr
from tilesr.errors import TilesrError
from tilesr.simulate import write_biosr_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("biosr") / "sim"
    write_biosr_dataset(out, n_train=3, n_test=2, size=32, scale=2, levels=(1, 5), seed=0)
    return out


def test_layout(dataset: Path) -> None:
    files = sorted(str(p.relative_to(dataset)) for p in dataset.rglob("*.tif"))
    assert files == [
        "test_gt/0001.tif",
        "test_gt/0002.tif",
        "test_wf/level_01/0001.tif",
        "test_wf/level_01/0002.tif",
        "test_wf/level_05/0001.tif",
        "test_wf/level_05/0002.tif",
        "training_gt/0001.tif",
        "training_gt/0002.tif",
        "training_gt/0003.tif",
        "training_wf/0001.tif",
        "training_wf/0002.tif",
        "training_wf/0003.tif",
    ]
    assert tifffile.imread(dataset / "training_wf/0001.tif").dtype == np.float32


def test_round_trip_through_load_biosr(dataset: Path) -> None:
    train = load_biosr(dataset)
    assert [p.name for p in train] == ["0001", "0002", "0003"]
    for p in train:
        assert p.lr.shape == (16, 16) and p.hr.shape == (32, 32)
        np.testing.assert_array_equal(
            p.lr, tifffile.imread(dataset / "training_wf" / f"{p.name}.tif")
        )
    test = load_biosr(dataset, "test")
    assert [p.name for p in test] == [
        "level_01/0001",
        "level_01/0002",
        "level_05/0001",
        "level_05/0002",
    ]
    # the same structures at every level, different noise
    np.testing.assert_array_equal(test[0].hr, test[2].hr)
    assert not np.array_equal(test[0].lr, test[2].lr)
    assert [p.name for p in load_biosr(dataset, "test", level=5)] == [
        "level_05/0001",
        "level_05/0002",
    ]
    with pytest.raises(TilesrError, match="unknown level 3"):
        load_biosr(dataset, "test", level=3)


def test_level_5_lr_is_cleaner_than_level_1(dataset: Path) -> None:
    def corr(level: int) -> float:
        pair = load_biosr(dataset, "test", level=level)[0]
        clean = pair.hr.reshape(16, 2, 16, 2).mean(axis=(1, 3))
        return float(np.corrcoef(clean.ravel(), pair.lr.ravel())[0, 1])

    assert corr(1) < corr(5)


def test_refuses_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    write_biosr_dataset(tmp_path, n_train=2, n_test=0, size=16, scale=2, levels=[3])
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(TilesrError, match="not empty"):
        write_biosr_dataset(tmp_path, n_train=1, n_test=0, size=16, scale=2)
    # overwriting replaces the dataset (no stale files) and keeps unrelated files
    write_biosr_dataset(tmp_path, n_train=1, n_test=1, size=16, scale=2, levels=[3], overwrite=True)
    assert sorted(p.name for p in (tmp_path / "training_wf").iterdir()) == ["0001.tif"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(TilesrError, match="noise level"):
        write_biosr_dataset(tmp_path / "a", n_train=1, n_test=0, size=16, scale=2, levels=[0])
    with pytest.raises(TilesrError, match="multiple of the scale"):
        write_biosr_dataset(tmp_path / "b", n_train=1, n_test=0, size=15, scale=2)
    with pytest.raises(TilesrError, match="at least one image"):
        write_biosr_dataset(tmp_path / "c", n_train=0, n_test=0, size=16, scale=2)
    assert not (tmp_path / "a").exists()
