"""Validation images: every source represented, or a warning that says which is not."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

import yaml

from tilesr.training.config import config_from_dict
from tilesr.training.data import load_training_data

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


def _two_sources(n_images: int) -> Any:
    raw = yaml.safe_load(TINY.read_text())
    first = raw["data"]["sources"][0]
    second = copy.deepcopy(first) | {"noise_level": 8, "seed": 5, "val_seed": 2000}
    raw["data"]["sources"] = [first | {"n": 2}, second | {"n": 2}]
    config = config_from_dict(raw)
    return dataclasses.replace(
        config, validation=dataclasses.replace(config.validation, n_images=n_images)
    )


def test_validation_images_are_named_after_their_source(caplog: Any) -> None:
    with caplog.at_level(logging.WARNING, logger="tilesr"):
        data = load_training_data(_two_sources(n_images=2))
    assert [v.name for v in data.validation] == ["0:simulated/sim_0000", "1:simulated/sim_0000"]
    assert not caplog.records


def test_a_source_without_validation_images_is_named(caplog: Any) -> None:
    # round-robin picks the first source's images first: with one image the second
    # source (in the bundled recipes: the real data, listed last) would not count
    with caplog.at_level(logging.WARNING, logger="tilesr"):
        data = load_training_data(_two_sources(n_images=1))
    assert [v.name for v in data.validation] == ["0:simulated/sim_0000"]
    (record,) = caplog.records
    message = record.getMessage()
    assert "1:simulated" in message and "0:simulated" not in message
    assert "n_images 2 or more" in message


def test_simulated_source_passes_its_target_background_to_the_simulator() -> None:
    # the same seed with and without background in the target: the same input, a
    # different (normalised) target
    config = _two_sources(n_images=2)
    first = config.data.sources[0]
    kept = dataclasses.replace(first, target_background=1.0)
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, sources=(first, kept))
    )
    plain, with_background = load_training_data(config).validation
    assert (plain.cond == with_background.cond).all()
    # small after percentile normalisation (a smooth, faint field), but there
    assert abs(plain.target - with_background.target).max() > 1e-3


def _with_optics(values: list[float], weights: list[float], unknown: float) -> Any:
    data = load_training_data(_two_sources(n_images=0))
    return dataclasses.replace(
        data,
        weights=np.array(weights, dtype=np.float64),
        target_optics=np.array(values, dtype=np.float32),
        unknown_share=unknown,
    )


def test_each_sample_carries_its_sources_target_optics() -> None:
    plain = load_training_data(_two_sources(n_images=0))
    assert plain.target_optics is None
    for weights, value in (([1.0, 0.0], -1.0), ([0.0, 1.0], 1.0)):
        data = _with_optics([-1.0, 1.0], weights, unknown=0.0)
        cond, target = data.batch(np.random.default_rng(3), 6)
        assert cond.shape == (6, 2, *target.shape[2:]) and target.shape[1] == 1
        assert (cond[:, 1] == value).all()
        # the image channel is the batch a network without the input gets
        image, same_target = dataclasses.replace(data, target_optics=None).batch(
            np.random.default_rng(3), 6
        )
        assert (cond[:, :1] == image).all() and (target == same_target).all()


def test_a_share_of_the_samples_say_unknown() -> None:
    data = _with_optics([-1.0, 1.0], [0.5, 0.5], unknown=0.25)
    cond, _ = data.batch(np.random.default_rng(0), 400)
    planes = cond[:, 1]
    assert (planes == planes[:, :1, :1]).all()  # constant over each sample
    values = planes[:, 0, 0]
    assert set(np.unique(values)) == {-1.0, 0.0, 1.0}
    assert 0.17 < float(np.mean(values == 0.0)) < 0.33


def test_sources_declare_their_target_optics() -> None:
    from tilesr.training.config import SOURCE_KINDS

    optics = {kind: cls.target_optics for kind, cls in SOURCE_KINDS.items()}
    # only the W2S frame averages share the input's optics
    assert optics == {
        "simulated": "sharper",
        "biosr": "sharper",
        "w2s": "same",
        "confocal_sted": "sharper",
        "forward_model": "sharper",
    }
    config = _two_sources(n_images=0)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, target_optics=True))
    assert load_training_data(config).target_optics.tolist() == [1.0, 1.0]
