"""Training configuration: YAML parsed with ``yaml.safe_load`` into frozen dataclasses.

A config has the sections ``data``, ``model`` (:class:`~tilesr.model.unet.UNetConfig`
fields), ``diffusion`` (:class:`~tilesr.metadata.ScheduleSpec` fields), ``training``,
``validation``, ``export`` and the key ``output_dir``. Every section is checked here, at
the boundary: an unknown key anywhere, a value of the wrong type or an impossible value
raises :class:`~tilesr.errors.TilesrError` naming the key, its section and the value.
Nothing in the file is evaluated or imported (no class paths).

Paths. A data path ``data:NAME/PATH`` names a file of a public dataset (``tilesr data
list``) and resolves to a local copy of it (:mod:`tilesr.data.fetch`: ``$TILESR_DATA``, a
``shared/data`` folder beside the checkout, the user cache); reading a config never
downloads, ``load_config(..., fetch_missing=True)`` (``tilesr train``) fetches what is
missing. Other relative data paths are looked up first relative to the folder holding
the config file, then relative to the current working directory. ``output_dir`` is
relative to the current working directory.

YAML note: PyYAML reads ``1e-3`` (no dot) as a string; float fields accept such strings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Union

import yaml

from tilesr.data.fetch import SCHEME as DATA_SCHEME
from tilesr.data.fetch import fetch_referenced, resolve_reference
from tilesr.diffusion.samplers import SAMPLER_NAMES
from tilesr.errors import TilesrError, check_choice, first_line
from tilesr.metadata import (
    PREDICTIONS,
    SAMPLE_NOISE,
    TARGET_OPTICS,
    ScheduleSpec,
    check_consistency,
    check_tile_geometry,
)
from tilesr.model.unet import UNetConfig

LOSSES = ("mse", "l1")
#: what a run trains: a diffusion model, a regression (CARE-like) network, or a diffusion
#: refiner of a trained regression network's output (tilesr.model.refined)
OBJECTIVES = ("diffusion", "regression", "refinement")
DEVICES = ("auto", "cpu", "cuda")


# --------------------------------------------------------------------------- data sources


@dataclass(frozen=True)
class SimulatedSource:
    """Pairs from the built-in simulator; validation images use a different seed."""

    kind: ClassVar[str] = "simulated"
    #: its targets' optics against its inputs' (tilesr.model.target_optics)
    target_optics: ClassVar[str] = "sharper"
    n: int = 32
    size: int = 256
    noise_level: int = 5
    seed: int = 0
    val_n: int = 2
    val_seed: int = 1000
    weight: float = 1.0
    # share of the input's smooth background kept in the target (ForwardModel)
    target_background: float = 0.0

    def __post_init__(self) -> None:
        _positive(self, "n", "size")
        _non_negative(self, "val_n")
        if not 0 <= self.target_background <= 1:
            raise TilesrError(
                "data source 'simulated': target_background must be in [0, 1], "
                f"got {self.target_background}"
            )
        if self.val_seed == self.seed:
            raise TilesrError(
                "data source 'simulated': val_seed must differ from seed, "
                f"got {self.val_seed} for both"
            )


@dataclass(frozen=True)
class BioSRSource:
    """A folder in the BioSR layout: ``training_*`` for training, ``test_*`` held out.

    ``val_level`` picks one test noise level (``test_wf/level_XX``); null takes all.
    """

    kind: ClassVar[str] = "biosr"
    target_optics: ClassVar[str] = "sharper"  # SIM
    root: str
    val_level: int | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class W2SSource:
    """W2S noisy/clean pairs; training and validation are explicit, disjoint field lists."""

    kind: ClassVar[str] = "w2s"
    target_optics: ClassVar[str] = "same"  # the same microscope's frame average
    root: str
    fields: tuple[int, ...] = tuple(range(1, 37))  # the NNN of the file names
    val_fields: tuple[int, ...] = (37, 38, 39, 40)
    channels: tuple[int, ...] = (0, 1, 2)
    bin_lr: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        shared = sorted(set(self.fields) & set(self.val_fields))
        if shared:
            raise TilesrError(
                f"data source 'w2s': fields {shared} are in both fields and val_fields"
            )
        if not self.fields:
            raise TilesrError("data source 'w2s': fields must not be empty")


@dataclass(frozen=True)
class ConfocalStedSource:
    """Confocal/STED pairs (same grid); validation files listed separately."""

    kind: ClassVar[str] = "confocal_sted"
    target_optics: ClassVar[str] = "sharper"  # STED
    paths: tuple[str, ...]
    val_paths: tuple[str, ...] = ()
    bin_lr: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.paths:
            raise TilesrError("data source 'confocal_sted': paths must not be empty")


@dataclass(frozen=True)
class ForwardModelSource:
    """Real high-resolution images degraded by the simulator's forward model.

    The bottom ``val_fraction`` of every image's rows is held out for validation.
    """

    kind: ClassVar[str] = "forward_model"
    target_optics: ClassVar[str] = "sharper"  # the forward model blurs the input more
    paths: tuple[str, ...]
    val_fraction: float = 0.15
    noise_level: int = 5
    seed: int = 0
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.paths:
            raise TilesrError("data source 'forward_model': paths must not be empty")
        if not 0.0 <= self.val_fraction < 0.5:
            raise TilesrError(
                "data source 'forward_model': val_fraction must be in [0, 0.5), "
                f"got {self.val_fraction}"
            )


DataSource = SimulatedSource | BioSRSource | W2SSource | ConfocalStedSource | ForwardModelSource
SOURCE_KINDS: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (SimulatedSource, BioSRSource, W2SSource, ConfocalStedSource, ForwardModelSource)
}
# sources whose pairs are on one grid; a model with scale > 1 needs ``bin_lr``
_SAME_GRID = ("w2s", "confocal_sted")


@dataclass(frozen=True)
class DataConfig:
    """The training sources (mixed by weight in every batch) and augmentation."""

    sources: tuple[DataSource, ...]
    augment: bool = True
    #: give the network a target-optics input (tilesr.model.target_optics): each source's
    #: pairs say whether their target has the input's optics or sharper ones ...
    target_optics: bool = False
    #: ... except this share of the samples, which say "unknown" (the mix's answer)
    target_optics_unknown: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_optics_unknown < 1.0:
            raise TilesrError(
                f"data target_optics_unknown must be in [0, 1), got {self.target_optics_unknown}"
            )


# --------------------------------------------------------------------------- other sections


@dataclass(frozen=True)
class TrainingConfig:
    """The optimisation loop."""

    steps: int = 20_000
    batch_size: int = 16
    patch_size: int = 128
    #: ``diffusion`` (a denoiser of x_t) or ``regression`` (CARE-like: HR from the
    #: conditioning image alone, one network evaluation at inference)
    objective: str = "diffusion"
    #: what a diffusion network outputs: ``epsilon`` (DDPM), ``x0`` or ``v``
    prediction: str = "epsilon"
    #: objective ``refinement``: the regression run's checkpoint whose output is refined
    #: (its EMA weights are frozen inside the new model; a relative path is relative to
    #: the config file's folder)
    predictor: str | None = None
    #: a diffusion network trained for one few-step sampler: this fraction of each batch
    #: takes its timesteps from the ``focus_steps``-step spacing the sampler visits
    #: (``spaced_timesteps``), the rest stays uniform over all T so other samplers still
    #: work; null: uniform only (the DDPM recipe)
    focus_steps: int | None = None
    focus_fraction: float = 0.5
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 500  # linear warm-up steps, clipped to the run's length
    loss: str = "mse"
    ema_decay: float = 0.999
    grad_clip: float | None = 1.0
    checkpoint_every: int = 1000
    validate_every: int = 1000
    log_every: int = 50
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(self, "steps", "batch_size", "patch_size", "checkpoint_every", "log_every")
        _non_negative(self, "warmup", "validate_every")
        if not self.lr > 0:
            raise TilesrError(f"training lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise TilesrError(
                f"training weight_decay must be non-negative, got {self.weight_decay}"
            )
        check_choice("training loss", self.loss, LOSSES)
        check_choice("training objective", self.objective, OBJECTIVES)
        check_choice("training prediction", self.prediction, PREDICTIONS)
        if self.objective == "regression" and self.prediction != "x0":
            raise TilesrError(
                "training objective 'regression' predicts the image: set prediction: x0, "
                f"got {self.prediction!r}"
            )
        if self.objective == "refinement" and (self.predictor is None or self.prediction != "v"):
            raise TilesrError(
                "training objective 'refinement' needs training.predictor (a regression "
                f"checkpoint) and prediction: v, got {self.predictor!r} and {self.prediction!r}"
            )
        if self.objective != "refinement" and self.predictor is not None:
            raise TilesrError("training.predictor is only used by objective 'refinement'")
        self._check_focus()
        if not 0.0 <= self.ema_decay < 1.0:
            raise TilesrError(f"training ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise TilesrError(f"training grad_clip must be positive or null, got {self.grad_clip}")
        check_choice("training device", self.device, DEVICES)

    def _check_focus(self) -> None:
        if not 0.0 < self.focus_fraction <= 1.0:
            raise TilesrError(
                f"training focus_fraction must be in (0, 1], got {self.focus_fraction}"
            )
        if self.focus_steps is None:
            return
        if self.objective == "regression":
            raise TilesrError("training.focus_steps is for diffusion objectives, not regression")
        if not (isinstance(self.focus_steps, int) and self.focus_steps >= 1):
            raise TilesrError(
                f"training focus_steps must be a positive integer or null, got {self.focus_steps!r}"
            )


@dataclass(frozen=True)
class ValidationConfig:
    """Held-out images sampled with the EMA weights during training (n_images 0: none)."""

    n_images: int = 4
    crop: int = 128  # centre crop (HR pixels) to keep validation sampling cheap
    sampler: str = "dpmpp"
    steps: int = 10
    samples: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        _non_negative(self, "n_images")
        _positive(self, "crop", "steps", "samples")
        check_choice("validation sampler", self.sampler, SAMPLER_NAMES)


@dataclass(frozen=True)
class ExportConfig:
    """What the trained model declares about itself (:class:`~tilesr.metadata.ModelMetadata`)."""

    scale: int = 2
    tile_size: int = 128
    overlap: int = 32
    #: default block context recorded in the model (HR px; None: one tile)
    context: int | None = None
    norm_low: float = 0.1
    norm_high: float = 99.9
    #: default sampling strength recorded in the model (validation samples with it too)
    strength: float = 1.0
    #: default sampling of ``tilesr restore`` recorded in the model (regression: 1 x 1)
    sampler: str = "dpmpp"
    steps: int = 20
    samples: int = 1
    #: default noise of the samples recorded in the model (tilesr.metadata.SAMPLE_NOISE)
    sample_noise: str = "independent"
    #: uncertainty calibration recorded in the model (fitted after training on the
    #: validation data by tools/calibrate.py; see tilesr.diffusion.uncertainty)
    uncertainty_scale: float = 1.0
    uncertainty_pool: float = 0.0
    #: default data consistency recorded in the model (tilesr.diffusion.consistency;
    #: sigma in input pixels, 0: off): only for data whose targets keep the input's optics
    consistency: float = 0.0
    #: the target optics an export's graph fixes (tilesr.metadata.TARGET_OPTICS), for a
    #: network trained with data.target_optics; null there: "unknown"
    target_optics: str | None = None

    def __post_init__(self) -> None:
        if self.target_optics is not None:
            check_choice("export target_optics", self.target_optics, TARGET_OPTICS)
        if self.scale not in (1, 2, 3, 4):
            raise TilesrError(f"export scale must be 1, 2, 3 or 4, got {self.scale}")
        check_consistency(self.consistency)
        _positive(self, "steps", "samples")
        if self.context is not None and self.context < 0:
            raise TilesrError(f"export context must be >= 0 pixels, got {self.context}")
        check_choice("export sampler", self.sampler, SAMPLER_NAMES)
        if not 0.0 < self.strength <= 1.0:
            raise TilesrError(f"export strength must be in (0, 1], got {self.strength}")
        check_choice("export sample_noise", self.sample_noise, SAMPLE_NOISE)
        if not 0 <= self.norm_low < self.norm_high <= 100:
            raise TilesrError(
                "export norm percentiles need 0 <= norm_low < norm_high <= 100, "
                f"got {self.norm_low} and {self.norm_high}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    data: DataConfig
    model: UNetConfig = field(default_factory=UNetConfig)
    diffusion: ScheduleSpec = field(default_factory=ScheduleSpec)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    output_dir: str = "runs/tilesr"

    def __post_init__(self) -> None:
        regression = self.training.objective == "regression"
        if self.model.conditioning_only and not regression:
            raise TilesrError(
                "model conditioning_only (a network without noisy input and timestep) "
                "needs training objective: regression"
            )
        if regression and not self.model.conditioning_only:
            # the regression network is the same U-Net without the noisy input and time
            object.__setattr__(
                self, "model", dataclasses.replace(self.model, conditioning_only=True)
            )
        self._set_target_optics()
        if self.training.objective == "refinement" and self.model.cond_channels != 2:
            # the refiner sees the LR image and the predictor's output
            object.__setattr__(self, "model", dataclasses.replace(self.model, cond_channels=2))
        m = self.model.size_multiple
        check_tile_geometry(self.export.tile_size, self.export.overlap, m)
        if self.training.patch_size % m:
            raise TilesrError(
                f"training patch_size must be a multiple of {m} for this U-Net, "
                f"got {self.training.patch_size}"
            )
        if self.validation.crop % m:
            raise TilesrError(
                f"validation crop must be a multiple of {m} for this U-Net, "
                f"got {self.validation.crop}"
            )
        if self.training.patch_size % self.export.scale:
            raise TilesrError(
                f"training patch_size must be a multiple of the scale {self.export.scale}, "
                f"got {self.training.patch_size}"
            )
        for source in self.data.sources:
            if source.kind in _SAME_GRID and self.export.scale > 1 and not _bins(source):
                raise TilesrError(
                    f"data source {source.kind!r} has input and target on one grid but scale is "
                    f"{self.export.scale}; set bin_lr: true or use scale 1"
                )

    def _set_target_optics(self) -> None:
        """The network's target-optics input follows ``data.target_optics``."""
        if not self.data.target_optics:
            if self.export.target_optics is not None:
                raise TilesrError(
                    "export target_optics needs a network trained with data.target_optics: true"
                )
            return
        if self.training.objective == "refinement":
            raise TilesrError("data.target_optics is not available for objective 'refinement'")
        object.__setattr__(self, "model", dataclasses.replace(self.model, target_optics_input=True))
        if self.export.target_optics is None:
            object.__setattr__(
                self, "export", dataclasses.replace(self.export, target_optics="unknown")
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dictionary (the YAML's structure) for checkpoints and logs."""
        return {
            "data": {
                "sources": [
                    {"kind": s.kind, **_plain(dataclasses.asdict(s))} for s in self.data.sources
                ],
                "augment": self.data.augment,
                "target_optics": self.data.target_optics,
                "target_optics_unknown": self.data.target_optics_unknown,
            },
            "model": self.model.to_dict(),
            "diffusion": _plain(dataclasses.asdict(self.diffusion)),
            "training": _plain(dataclasses.asdict(self.training)),
            "validation": _plain(dataclasses.asdict(self.validation)),
            "export": _plain(dataclasses.asdict(self.export)),
            "output_dir": self.output_dir,
        }

    def with_overrides(
        self, *, steps: int | None = None, output_dir: str | Path | None = None
    ) -> TrainConfig:
        """A copy with command-line overrides applied (and checked again)."""
        config = self
        if steps is not None:
            config = dataclasses.replace(
                config, training=dataclasses.replace(config.training, steps=steps)
            )
        if output_dir is not None:
            config = dataclasses.replace(config, output_dir=str(output_dir))
        return config


# --------------------------------------------------------------------------- parsing

_SECTIONS = ("data", "model", "diffusion", "training", "validation", "export", "output_dir")


def load_config(path: str | Path, *, fetch_missing: bool = False) -> TrainConfig:
    """Read and check a training config from a YAML file.

    Parameters
    ----------
    path
        The YAML file. Relative data paths inside it are resolved against its folder,
        then against the current working directory; ``data:NAME/PATH`` paths against a
        local copy of the dataset.
    fetch_missing
        Download the datasets named by ``data:`` paths that are not on this machine
        (one line says so for each); otherwise they are an error naming
        ``tilesr data fetch NAME``.

    Returns
    -------
    TrainConfig
        With every data path made absolute and checked to exist.
    """
    path = Path(path)
    raw = _read_yaml(path)
    if fetch_missing:
        fetch_referenced(raw, base_dir=path.parent)
    return config_from_dict(raw, base_dir=path.parent)


def load_export_section(path: str | Path) -> tuple[ExportConfig, TrainingConfig]:
    """A config's checked ``export`` and ``training`` sections, without its data: what an
    export reads from a config, so it needs none of the config's datasets."""
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, Mapping):
        raise TilesrError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    export = _section(ExportConfig, raw.get("export"), "export")
    return export, _training_section(raw.get("training"), path.parent)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise TilesrError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TilesrError(f"config {str(path)!r} is not valid YAML: {first_line(exc)}") from None
    return raw if raw is not None else {}


def config_from_dict(raw: Any, *, base_dir: str | Path | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from the parsed YAML structure (see :func:`load_config`)."""
    if not isinstance(raw, Mapping):
        raise TilesrError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise TilesrError(
            f"unknown config section {unknown[0]!r} at the top level "
            f"(known: {', '.join(_SECTIONS)})"
        )
    if "data" not in raw:
        raise TilesrError("config needs a 'data' section with at least one source")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    output_dir = raw.get("output_dir", "runs/tilesr")
    if not isinstance(output_dir, str) or not output_dir:
        raise TilesrError(f"config output_dir must be a non-empty string, got {output_dir!r}")
    return TrainConfig(
        data=_data_section(raw["data"], base),
        model=_section(UNetConfig, raw.get("model"), "model"),
        diffusion=_section(ScheduleSpec, raw.get("diffusion"), "diffusion"),
        training=_training_section(raw.get("training"), base),
        validation=_section(ValidationConfig, raw.get("validation"), "validation"),
        export=_section(ExportConfig, raw.get("export"), "export"),
        output_dir=output_dir,
    )


def _data_section(raw: Any, base: Path) -> DataConfig:
    if not isinstance(raw, Mapping):
        raise TilesrError(f"config section 'data' must be a mapping, got {type(raw).__name__}")
    known = ("sources", "augment", "target_optics", "target_optics_unknown")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise TilesrError(
            f"unknown key {unknown[0]!r} in config section 'data' (known: {', '.join(known)})"
        )
    items = raw.get("sources")
    if not isinstance(items, list) or not items:
        raise TilesrError(f"config data.sources must be a non-empty list, got {items!r}")
    sources = []
    for i, item in enumerate(items):
        where = f"data.sources[{i}]"
        if not isinstance(item, Mapping) or "kind" not in item:
            raise TilesrError(f"config {where} must be a mapping with a 'kind', got {item!r}")
        kind = item["kind"]
        cls = SOURCE_KINDS.get(kind)
        if cls is None:
            raise TilesrError(
                f"config {where}: unknown data source kind {kind!r} "
                f"(known: {', '.join(SOURCE_KINDS)})"
            )
        source = _section(cls, {k: v for k, v in item.items() if k != "kind"}, f"{where} ({kind})")
        if not source.weight > 0:
            raise TilesrError(f"config {where}: weight must be positive, got {source.weight}")
        sources.append(_resolve_paths(source, base, where))
    return DataConfig(
        sources=tuple(sources),
        augment=_convert(raw.get("augment", True), bool, "data.augment"),
        target_optics=_convert(raw.get("target_optics", False), bool, "data.target_optics"),
        target_optics_unknown=_convert(
            raw.get("target_optics_unknown", 0.25), float, "data.target_optics_unknown"
        ),
    )


def _training_section(raw: Any, base: Path) -> TrainingConfig:
    training: TrainingConfig = _section(TrainingConfig, raw, "training")
    if training.predictor is None:
        return training
    # relative to the config's folder; not checked here (a run's output may not exist
    # yet when the config is read): the trainer names a missing checkpoint
    path = Path(training.predictor).expanduser()
    return dataclasses.replace(training, predictor=str((base / path).resolve()))


def _resolve_paths(source: Any, base: Path, where: str) -> Any:
    if isinstance(source, W2SSource | BioSRSource):
        return dataclasses.replace(source, root=_find(source.root, base, where))
    if isinstance(source, ConfocalStedSource):
        return dataclasses.replace(
            source,
            paths=tuple(_find(p, base, where) for p in source.paths),
            val_paths=tuple(_find(p, base, where) for p in source.val_paths),
        )
    if isinstance(source, ForwardModelSource):
        return dataclasses.replace(source, paths=tuple(_find(p, base, where) for p in source.paths))
    return source


def _find(value: str, base: Path, where: str) -> str:
    if value.startswith(DATA_SCHEME):
        try:
            return str(resolve_reference(value, base_dir=base))
        except TilesrError as exc:
            raise TilesrError(f"config {where}: {exc}") from None
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [base / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate.resolve())
    looked = " and ".join(str(c) for c in dict.fromkeys(candidates))
    raise TilesrError(f"config {where}: data path {value!r} not found (looked for {looked})")


def _section(cls: type[Any], raw: Any, name: str) -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise TilesrError(f"config section {name!r} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise TilesrError(
            f"unknown key {unknown[0]!r} in config section {name!r} (known: {', '.join(known)})"
        )
    missing = [
        f.name
        for f in fields(cls)
        if f.init
        and f.name not in raw
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise TilesrError(f"config section {name!r} needs key {missing[0]!r}")
    values = {key: _convert(value, hints[key], f"{name}.{key}") for key, value in raw.items()}
    return cls(**values)


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against a simple type hint, converting lists to tuples."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TilesrError(f"config {where} must be a list, got {value!r}")
        item_type = typing.get_args(tp)[0]
        return tuple(_convert(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads 1e-3 as a string
            except ValueError:
                pass
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp in (int, bool, str):
        if isinstance(value, tp) and (tp is bool or not isinstance(value, bool)):
            return value
    else:  # pragma: no cover - a hint this parser does not know is a programming error
        raise TypeError(f"unsupported config type {tp!r} at {where}")
    raise TilesrError(f"config {where} must be {tp.__name__}, got {value!r}")


def _bins(source: DataSource) -> bool:
    return bool(getattr(source, "bin_lr", False))


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value < 1:
            raise TilesrError(f"{_label(obj)} {name} must be at least 1, got {value}")


def _non_negative(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value < 0:
            raise TilesrError(f"{_label(obj)} {name} must be non-negative, got {value}")


def _label(obj: Any) -> str:
    kind = getattr(obj, "kind", None)
    if kind is not None and not isinstance(obj, ScheduleSpec):
        return f"data source {kind!r}:"
    return type(obj).__name__.removesuffix("Config").lower()
