"""Model metadata that rides inside an exported ONNX file (torch-free).

Everything the engine needs to restore images with nothing but the ``.onnx`` file:
the noise schedule, the prediction type, the scale factor, the tile geometry and the
normalisation percentiles. Stored as ONNX ``metadata_props`` (string to string).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tilesr.errors import TilesrError, check_choice

FORMAT_NAME = "tilesr-ddpm"
FORMAT_VERSION = 1
_PROP_KEY = "tilesr"
#: what the network's output is (see tilesr.diffusion.parameterization)
PREDICTIONS = ("epsilon", "x0", "v")
#: ``diffusion``: a denoiser of x_t sampled by reverse diffusion; ``regression``: one
#: deterministic evaluation of the conditioning image (CARE-like), output read as x0
OBJECTIVES = ("diffusion", "regression")
#: samplers a model may name as its default (tilesr.diffusion.samplers.SAMPLER_NAMES)
SAMPLERS = ("ddpm", "ddim", "dpmpp")
#: noise of the samples of one pixel: ``antithetic`` (pairs of opposite noise, whose mean
#: cancels most of the sampling variance: tilesr.diffusion.sampling.SampleNoise) or
#: ``independent`` draws
SAMPLE_NOISE = ("antithetic", "independent")
#: the sampling a regression model's objective fixes: one deterministic evaluation per
#: tile from the conditioning (no noise, no strength, nothing to choose after training)
REGRESSION_SAMPLING: dict[str, Any] = {
    "strength": 1.0,
    "sampler": "ddim",
    "steps": 1,
    "samples": 1,
    "sample_noise": "independent",
}
#: the optics of the image a model restores to, for a network trained with a target-optics
#: input (tilesr.model.target_optics): ``same`` as the input's (denoised and resampled,
#: e.g. a frame average of the same microscope), ``sharper`` (SIM-like, deconvolved) or
#: ``unknown`` (what it learnt from the mix of both); each with the value of the constant
#: plane the network sees
TARGET_OPTICS_PLANE = {"same": -1.0, "sharper": 1.0, "unknown": 0.0}
TARGET_OPTICS = tuple(TARGET_OPTICS_PLANE)


@dataclass(frozen=True)
class ScheduleSpec:
    """Parameters of a noise schedule, built into arrays by ``build_schedule``."""

    kind: str = "linear"
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "cosine"):
            raise TilesrError(f"schedule kind must be 'linear' or 'cosine', got {self.kind!r}")
        if not isinstance(self.timesteps, int) or not 2 <= self.timesteps <= 100_000:
            raise TilesrError(
                f"schedule timesteps must be an integer in [2, 100000], got {self.timesteps!r}"
            )
        if self.kind == "linear" and not 0 < self.beta_start <= self.beta_end < 1:
            raise TilesrError(
                "linear schedule needs 0 < beta_start <= beta_end < 1, "
                f"got {self.beta_start!r} and {self.beta_end!r}"
            )


@dataclass(frozen=True)
class ModelMetadata:
    """What an exported tilesr model declares about itself."""

    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    prediction: str = "epsilon"
    objective: str = "diffusion"
    scale: int = 2
    tile_size: int = 128
    overlap: int = 32
    #: default block context (HR pixels sampled around each block with fused sampling,
    #: tools/bench_overlap.py); None: one tile, as files without this key restore
    context: int | None = None
    size_multiple: int = 8
    norm_low: float = 0.1
    norm_high: float = 99.9
    #: default sampling strength: start at round(strength * (T-1)) from the noised
    #: conditioning image (1: the whole schedule from noise)
    strength: float = 1.0
    #: default sampling of ``tilesr restore`` for this model (a file without these keys
    #: restores as tilesr did before they existed: dpmpp, 20 steps, 1 sample)
    sampler: str = "dpmpp"
    steps: int = 20
    samples: int = 1
    #: default noise of the samples (:data:`SAMPLE_NOISE`; a file without this key
    #: restores as before it existed: independent)
    sample_noise: str = "independent"
    #: calibration of the uncertainty map (tilesr.diffusion.uncertainty.predictive_std):
    #: a factor fitted on validation data and a Gaussian pooling of the variance (px)
    uncertainty_scale: float = 1.0
    uncertainty_pool: float = 0.0
    #: default data consistency (tilesr.diffusion.consistency): Gaussian sigma in input
    #: pixels of the scales on which the output must agree with its input; 0: off (as
    #: files without this key restore)
    consistency: float = 0.0
    #: the target optics the graph's fixed target-optics input says (TARGET_OPTICS);
    #: None: a network without that input (every file without this key)
    target_optics: str | None = None
    input_noisy: str = "noisy"
    input_cond: str = "cond"
    input_timestep: str = "t"
    output: str = "eps"
    weights_sha256: str = ""
    tilesr_version: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        check_choice("prediction", self.prediction, PREDICTIONS)
        check_choice("objective", self.objective, OBJECTIVES)
        if self.objective == "regression" and self.prediction != "x0":
            raise TilesrError(
                f"a regression model predicts the image (x0), got prediction {self.prediction!r}"
            )
        if self.objective == "regression" and (self.steps, self.samples) != (1, 1):
            raise TilesrError(
                "a regression model is evaluated once per tile: steps and samples must be 1, "
                f"got {self.steps} and {self.samples}"
            )
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("sample_noise", self.sample_noise, SAMPLE_NOISE)
        for name in ("steps", "samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TilesrError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < self.uncertainty_scale < 1000:
            raise TilesrError(f"uncertainty_scale must be positive, got {self.uncertainty_scale!r}")
        if not 0 <= self.uncertainty_pool <= 64:
            raise TilesrError(
                f"uncertainty_pool must be in [0, 64] pixels, got {self.uncertainty_pool!r}"
            )
        check_consistency(self.consistency)
        if self.target_optics is not None:
            check_choice("target_optics", self.target_optics, TARGET_OPTICS)
        if self.scale not in (1, 2, 3, 4):
            raise TilesrError(f"scale factor must be 1, 2, 3 or 4, got {self.scale!r}")
        if self.size_multiple < 1:
            raise TilesrError(f"size_multiple must be positive, got {self.size_multiple}")
        check_tile_geometry(self.tile_size, self.overlap, self.size_multiple)
        if self.context is not None and not 0 <= self.context <= 8 * self.tile_size:
            raise TilesrError(
                f"context must be in [0, {8 * self.tile_size}] pixels, got {self.context!r}"
            )
        if not 0.0 < self.strength <= 1.0:
            raise TilesrError(f"strength must be in (0, 1], got {self.strength}")
        if not 0 <= self.norm_low < self.norm_high <= 100:
            raise TilesrError(
                "normalisation percentiles need 0 <= low < high <= 100, "
                f"got {self.norm_low} and {self.norm_high}"
            )

    def to_props(self) -> dict[str, str]:
        """Serialise to ONNX metadata_props."""
        # an unset nullable key is left out, so older tilesr versions still read the file
        values = {k: v for k, v in asdict(self).items() if not (v is None and k in NULLABLE)}
        return {_PROP_KEY: json.dumps({"format": FORMAT_NAME, **values}, sort_keys=True)}

    @classmethod
    def from_props(cls, props: dict[str, str], *, source: str = "model") -> ModelMetadata:
        """Parse ONNX metadata_props, naming what is missing or malformed."""
        raw = props.get(_PROP_KEY)
        if raw is None:
            raise TilesrError(f"{source} has no tilesr metadata; export it with `tilesr export`")
        if len(raw) > 1_000_000:
            raise TilesrError(f"{source}: tilesr metadata is implausibly large ({len(raw)} bytes)")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TilesrError(f"{source}: tilesr metadata is not valid JSON ({exc.msg})") from None
        except RecursionError:  # hostile nesting ("[[[[..."): json recurses per level
            raise TilesrError(f"{source}: tilesr metadata is nested too deeply") from None
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT_NAME:
            raise TilesrError(f"{source}: metadata is not in the {FORMAT_NAME} format")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise TilesrError(
                f"{source}: metadata format version {version!r} is not supported "
                f"(this tilesr reads version {FORMAT_VERSION})"
            )
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "model") -> ModelMetadata:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise TilesrError(f"{source}: unknown metadata keys {unknown}")
        schedule = data.get("schedule", {})
        if not isinstance(schedule, dict):
            raise TilesrError(
                f"{source}: metadata 'schedule' must be a mapping, got {type(schedule).__name__}"
            )
        sched_fields = {f.name: f for f in fields(ScheduleSpec)}
        unknown = sorted(set(schedule) - set(sched_fields))
        if unknown:
            raise TilesrError(f"{source}: unknown schedule keys {unknown}")
        _check_types(
            schedule,
            {"kind": str, "timesteps": int, "beta_start": float, "beta_end": float},
            source,
        )
        values = {k: v for k, v in data.items() if k != "schedule"}
        _check_types(
            values,
            {
                "prediction": str,
                "objective": str,
                "scale": int,
                "tile_size": int,
                "overlap": int,
                "context": int,
                "size_multiple": int,
                "norm_low": float,
                "norm_high": float,
                "strength": float,
                "sampler": str,
                "steps": int,
                "samples": int,
                "sample_noise": str,
                "uncertainty_scale": float,
                "uncertainty_pool": float,
                "consistency": float,
                "target_optics": str,
                "input_noisy": str,
                "input_cond": str,
                "input_timestep": str,
                "output": str,
                "weights_sha256": str,
                "tilesr_version": str,
                "format_version": int,
            },
            source,
        )
        return cls(schedule=ScheduleSpec(**schedule), **values)


#: largest data-consistency sigma (input pixels): beyond it the correction is a constant
MAX_CONSISTENCY = 64.0


def check_consistency(sigma: object) -> None:
    """Refuse a data-consistency sigma that is not a number in [0, MAX_CONSISTENCY]."""
    number = isinstance(sigma, int | float) and not isinstance(sigma, bool)
    if not number or not 0.0 <= sigma <= MAX_CONSISTENCY:  # type: ignore[operator]
        raise TilesrError(
            f"consistency must be a sigma in [0, {MAX_CONSISTENCY:g}] input pixels "
            f"(0: off), got {sigma!r}"
        )


def check_tile_geometry(tile_size: int, overlap: int, size_multiple: int = 1) -> None:
    """Refuse tile sizes the network cannot take and overlaps that leave no stride."""
    if not isinstance(tile_size, int) or not 8 <= tile_size <= 4096:
        raise TilesrError(f"tile size must be an integer in [8, 4096], got {tile_size!r}")
    if tile_size % size_multiple:
        raise TilesrError(
            f"tile size must be a multiple of {size_multiple} for this network, got {tile_size}"
        )
    if not isinstance(overlap, int) or overlap < 0:
        raise TilesrError(f"overlap must be a non-negative integer, got {overlap!r}")
    if overlap >= tile_size:
        raise TilesrError(
            f"overlap must be smaller than the tile size, got {overlap} versus {tile_size}"
        )


#: metadata keys whose value may be null (None: the engine's own default)
NULLABLE = frozenset({"context", "target_optics"})


def _check_types(values: dict[str, Any], expected: dict[str, type], source: str) -> None:
    for key, value in values.items():
        want = expected[key]
        if value is None and key in NULLABLE:
            continue
        ok = isinstance(value, want) and not isinstance(value, bool)
        if want is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            raise TilesrError(
                f"{source}: metadata {key!r} must be {want.__name__}, got {type(value).__name__}"
            )
