"""Turn the config's data sources into in-memory patch samplers and validation images.

Everything is loaded once (the datasets are small compared with memory); every batch is
then a pure function of its random generator, which the trainer derives from
``(seed, step)`` so that a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from math import lcm

import numpy as np
import tifffile
from numpy.typing import NDArray

from tilesr.data.conditioning import conditioning
from tilesr.data.datasets import (
    ImagePair,
    PatchSampler,
    load_biosr,
    load_confocal_sted,
    load_w2s,
)
from tilesr.data.normalize import percentile_range
from tilesr.data.resize import bin_mean
from tilesr.errors import TilesrError
from tilesr.metadata import TARGET_OPTICS_PLANE
from tilesr.simulate import ForwardModel, degrade, simulate_pairs
from tilesr.training.config import (
    BioSRSource,
    ConfocalStedSource,
    DataSource,
    ForwardModelSource,
    SimulatedSource,
    TrainConfig,
    W2SSource,
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationImage:
    """A held-out image in model space: ``cond`` (upsampled LR) and ``target`` (HR), (H, W)."""

    name: str
    cond: NDArray[np.float32]
    target: NDArray[np.float32]


@dataclass(frozen=True)
class TrainingData:
    """One patch sampler per source, mixed by weight, plus the validation images.

    ``target_optics``: per source, the value of its target-optics plane
    (:data:`~tilesr.metadata.TARGET_OPTICS_PLANE`), or None for a network without that
    input; ``unknown_share`` of the samples get the "unknown" value instead.
    """

    samplers: tuple[PatchSampler, ...]
    weights: NDArray[np.float64]
    validation: tuple[ValidationImage, ...]
    target_optics: NDArray[np.float32] | None = None
    unknown_share: float = 0.0

    def batch(
        self, rng: np.random.Generator, size: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``(cond, target)``, (size, C, P, P) and (size, 1, P, P); sources drawn in
        proportion to weight. C is 1, or 2 with the target-optics plane."""
        counts = rng.multinomial(size, self.weights)
        parts = [s.sample(rng, int(c)) for s, c in zip(self.samplers, counts, strict=True) if c]
        cond = np.concatenate([p[0] for p in parts])
        target = np.concatenate([p[1] for p in parts])
        if self.target_optics is not None:
            cond = np.concatenate([cond, self._optics_planes(rng, counts, cond.shape)], axis=1)
        return cond, target

    def _optics_planes(
        self, rng: np.random.Generator, counts: NDArray[np.int64], shape: tuple[int, ...]
    ) -> NDArray[np.float32]:
        assert self.target_optics is not None
        values = np.repeat(self.target_optics, counts)  # in the order the parts were drawn
        unknown = rng.random(len(values)) < self.unknown_share
        values = np.where(unknown, TARGET_OPTICS_PLANE["unknown"], values).astype(np.float32)
        return np.broadcast_to(values[:, None, None, None], shape).copy()


def load_training_data(config: TrainConfig) -> TrainingData:
    """Load every source of ``config.data`` and prepare validation crops.

    Parameters
    ----------
    config
        The run's configuration (scale, patch size, percentiles, validation crop).

    Returns
    -------
    TrainingData
        Validation images are taken round-robin over the sources' held-out pairs, up
        to ``validation.n_images``, each named after its source (``2:w2s/...``: the
        third source of the config); a warning names the sources that get none.
    """
    scale = config.export.scale
    samplers = []
    held_out: list[list[ImagePair]] = []
    for i, source in enumerate(config.data.sources):
        train, val = _load_source(source, scale)
        train = _to_scale(train, scale, source)
        samplers.append(
            PatchSampler(
                train,
                patch_size=config.training.patch_size,
                scale=scale,
                norm_low=config.export.norm_low,
                norm_high=config.export.norm_high,
                augment=config.data.augment,
            )
        )
        val = _to_scale(val, scale, source)
        held_out.append([replace(p, name=f"{i}:{source.kind}/{p.name}") for p in val])
    weights = np.array([s.weight for s in config.data.sources], dtype=np.float64)
    chosen = _round_robin(held_out, config.validation.n_images)
    _warn_uncovered(config, held_out, chosen)
    multiple = lcm(config.model.size_multiple, scale)
    validation = tuple(
        _validation_image(p, scale, config.validation.crop, multiple, config) for p in chosen
    )
    optics = None
    if config.data.target_optics:
        optics = np.array(
            [TARGET_OPTICS_PLANE[s.target_optics] for s in config.data.sources], dtype=np.float32
        )
    return TrainingData(
        tuple(samplers),
        weights / weights.sum(),
        validation,
        target_optics=optics,
        unknown_share=config.data.target_optics_unknown,
    )


def _load_source(source: DataSource, scale: int) -> tuple[list[ImagePair], list[ImagePair]]:
    if isinstance(source, SimulatedSource):
        size, level = source.size, source.noise_level
        optics = ForwardModel(target_background=source.target_background)
        return (
            simulate_pairs(
                source.n, size=size, scale=scale, noise_level=level, seed=source.seed, model=optics
            ),
            simulate_pairs(
                source.val_n,
                size=size,
                scale=scale,
                noise_level=level,
                seed=source.val_seed,
                model=optics,
            ),
        )
    if isinstance(source, BioSRSource):
        return (
            load_biosr(source.root, "train"),
            load_biosr(source.root, "test", source.val_level),
        )
    if isinstance(source, W2SSource):
        val = load_w2s(source.root, source.val_fields, source.channels) if source.val_fields else []
        return load_w2s(source.root, source.fields, source.channels), val
    if isinstance(source, ConfocalStedSource):
        val = load_confocal_sted(source.val_paths) if source.val_paths else []
        return load_confocal_sted(source.paths), val
    return _forward_model(source, scale)


def _forward_model(
    source: ForwardModelSource, scale: int
) -> tuple[list[ImagePair], list[ImagePair]]:
    """Degrade each HR image; the bottom ``val_fraction`` of its rows is held out."""
    train, val = [], []
    for i, path in enumerate(source.paths):
        try:
            image = np.squeeze(tifffile.imread(path)).astype(np.float32)
        except Exception as exc:  # tifffile raises several types for bad files
            raise TilesrError(f"cannot read {path}: {exc}") from None
        if image.ndim != 2:
            raise TilesrError(f"forward_model source {path} must be a 2-D image, got {image.shape}")
        n_val = round(image.shape[0] * source.val_fraction / scale) * scale
        split = image.shape[0] - n_val
        name = f"{i:02d}_{path.rsplit('/', 1)[-1].rsplit('.', 1)[0]}"
        # distinct noise seeds per image and per part, derived from the source's seed
        train.append(
            degrade(
                image[:split],
                scale=scale,
                noise_level=source.noise_level,
                seed=source.seed * 1000 + 2 * i,
                name=name,
            )
        )
        if n_val:
            val.append(
                degrade(
                    image[split:],
                    scale=scale,
                    noise_level=source.noise_level,
                    seed=source.seed * 1000 + 2 * i + 1,
                    name=f"{name}_val",
                )
            )
    return train, val


def _to_scale(pairs: list[ImagePair], scale: int, source: DataSource) -> list[ImagePair]:
    """Bin same-grid pairs (W2S, confocal/STED) to ``scale`` when the source asks for it."""
    if scale == 1 or not getattr(source, "bin_lr", False):
        return pairs
    out = []
    for p in pairs:
        if p.lr.shape != p.hr.shape:
            raise TilesrError(
                f"bin_lr needs same-grid pairs, but {p.name!r} is {p.lr.shape} -> {p.hr.shape}"
            )
        h, w = (p.lr.shape[0] // scale) * scale, (p.lr.shape[1] // scale) * scale
        out.append(ImagePair(bin_mean(p.lr, scale).astype(np.float32), p.hr[:h, :w], p.name))
    return out


def _warn_uncovered(
    config: TrainConfig, held_out: Sequence[Sequence[ImagePair]], chosen: Sequence[ImagePair]
) -> None:
    # best.pt is chosen on the validation images alone: a source without one (often the
    # real data, listed last) would not count at all
    names = {p.name for p in chosen}
    left_out = [
        f"{i}:{source.kind}"
        for i, (source, pairs) in enumerate(zip(config.data.sources, held_out, strict=True))
        if pairs and not any(p.name in names for p in pairs)
    ]
    if left_out:
        _log.warning(
            f"validation.n_images {config.validation.n_images} leaves out the held-out "
            f"images of {', '.join(left_out)}: best.pt is chosen without them "
            f"(n_images {sum(1 for pairs in held_out if pairs)} or more covers every source)"
        )


def _round_robin(groups: Sequence[Sequence[ImagePair]], n: int) -> list[ImagePair]:
    out: list[ImagePair] = []
    depth = max((len(g) for g in groups), default=0)
    for i in range(depth):
        for g in groups:
            if i < len(g) and len(out) < n:
                out.append(g[i])
    return out


def _validation_image(
    pair: ImagePair, scale: int, crop: int, multiple: int, config: TrainConfig
) -> ValidationImage:
    """Normalise by the whole pair's percentiles (as training does), then a centre crop."""
    lo, hi = config.export.norm_low, config.export.norm_high
    hr = percentile_range(pair.hr, lo, hi).normalize(pair.hr)
    size = min(crop, (min(hr.shape) // multiple) * multiple)
    if size < multiple:
        raise TilesrError(
            f"validation image {pair.name!r} ({hr.shape}) is smaller than {multiple} px"
        )
    q = size // scale
    i, j = (pair.lr.shape[0] - q) // 2, (pair.lr.shape[1] - q) // 2
    cond = conditioning(pair.lr[i : i + q, j : j + q], scale, percentile_range(pair.lr, lo, hi))
    target = hr[i * scale : i * scale + size, j * scale : j * scale + size]
    # clipped like the training targets, so metrics compare like with like
    return ValidationImage(pair.name, cond, np.clip(target, -1, 1).astype(np.float32))
