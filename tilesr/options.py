"""What a restoration is asked to do: one frozen value, checked once where it is made.

:class:`RestoreOptions` is what ``tilesr restore`` parses from its command line and what
:func:`tilesr.restore` and :func:`tilesr.restore_file.restore_file` take. ``None`` means
"the model's default"; :func:`tilesr.engine.plan.make_plan` resolves the options once
against the model's metadata into the plan the engine runs, and the output's provenance
and resume fingerprint are written from that plan. Adding an option means a field here
(with its check), its command-line option, and the code that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tilesr.denoisers.onnx_backend import DEVICES
from tilesr.errors import TilesrError, check_choice
from tilesr.io.axes import AXIS_LETTERS, check_format
from tilesr.metadata import SAMPLE_NOISE, SAMPLERS, check_consistency

#: ``step``: blend the tiles' network outputs on the canvas at every step (MultiDiffusion,
#: seamless); ``final``: sample each tile alone and blend only the final images
FUSE_MODES = ("step", "final")
#: non-finite input pixels: refuse them, or replace them by 0 or by the finite mean
NAN_POLICIES = ("refuse", "zero", "mean")
#: output pixel type: float32, or the input's type (rounded and clipped)
OUTPUT_DTYPES = ("float32", "input")
#: noise of the planes of a stack, the default first: ``independent`` (keyed by the plane
#: index: neighbouring planes are independent samples; with antithetic sample noise they
#: no longer flicker, tools/bench_zstack.py) or ``shared`` (every plane draws plane 0's
#: noise: smoothest through z, but a detail the model invents may repeat through z)
PLANE_NOISE = ("independent", "shared")
#: smallest output block edge (HR pixels)
MIN_BLOCK = 8


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore an image; every field is checked when the value is made.

    Attributes
    ----------
    samples
        Samples per pixel; the output is their mean. None: the model's.
    steps
        Network evaluations per sample. None: the model's.
    sampler
        ``ddpm``, ``ddim`` or ``dpmpp`` (DPM-Solver++(2M)). None: the model's. A
        regression model is evaluated once per tile: it takes no samples, steps or sampler.
    strength
        Sampling starts at timestep ``round(strength * (T-1))`` from the noised
        conditioning image (1: from noise, the whole schedule). None: the model's.
    seed
        Seed of the coordinate-keyed noise.
    sample_noise
        One of :data:`SAMPLE_NOISE`. None: the model's (``independent`` for models that
        do not say).
    uncertainty
        Also compute the per-pixel standard deviation over the samples. None: when more
        than one sample is taken.
    tile_size, overlap
        Tile geometry in output (HR) pixels. None: the model's. Checked against the
        network's size multiple when planned.
    context
        HR pixels sampled around each block under ``fuse="step"``: the block's canvas
        holds every tile of the global grid within this distance, so that the block's
        edge tiles have fused neighbours. None: the model's ``context``, else one tile.
        A fraction of a tile saves network work (``tools/bench_overlap.py`` measures
        what it costs in quality);
        ``fuse="final"`` samples no context (0).
    block_size
        Output block (= chunk) edge in HR pixels. None: a multiple of the tile stride
        near 2048.
    fuse
        One of :data:`FUSE_MODES`.
    skip_background
        In [0, 1]: tiles whose brightest conditioning pixel is below this fraction of the
        intensity range are not run through the network (their pixels are the upsampled
        input). None: no skipping.
    batch_size
        Tile-samples per network call. None: 32 when ONNX Runtime runs on CUDA, else 8.
        Never changes the result.
    threads
        ONNX Runtime intra-op threads per block task. None: the cores divided by the
        scheduler's workers. Never changes the result.
    device
        Where ONNX Runtime runs the network: ``auto`` (CUDA when this ONNX Runtime has
        it and it starts, else the CPU), ``cpu`` or ``cuda``. The provider that actually
        ran is recorded in the output; CPU and CUDA results differ in their last bits,
        so a resumed run must run on the same one.
    consistency
        Data consistency (:mod:`tilesr.diffusion.consistency`): the Gaussian sigma, in
        input pixels, of the scales on which each sample is made to agree with the
        input (binned back to the input's grid). 0: off. None: the model's. Right for
        targets with the input's optics and background (a frame average of the same
        microscope); wrong for a deblurred or background-free target.
    plane_noise
        One of :data:`PLANE_NOISE`: whether the planes of a stack get their own noise
        (the default) or share plane 0's (tools/bench_zstack.py measures both).
    axes
        Names of the input's dimensions (``tczyx`` letters ending with ``yx``). None:
        what the file says; for an array, ``yx``, ``zyx``, ``czyx``, ``tczyx`` by rank.
    level, nan_policy, dtype, zarr_format
        Files only (:func:`tilesr.restore_file.restore_file`): the input's pyramid
        level, what to do with NaN/inf pixels (:data:`NAN_POLICIES`), the output pixel
        type (:data:`OUTPUT_DTYPES`) and its zarr format (3: OME-NGFF 0.5, 2: 0.4).
    """

    samples: int | None = None
    steps: int | None = None
    sampler: str | None = None
    strength: float | None = None
    seed: int = 0
    sample_noise: str | None = None
    uncertainty: bool | None = None
    tile_size: int | None = None
    overlap: int | None = None
    context: int | None = None
    block_size: int | None = None
    fuse: str = "step"
    skip_background: float | None = None
    batch_size: int | None = None
    threads: int | None = None
    device: str = "auto"
    consistency: float | None = None
    plane_noise: str = PLANE_NOISE[0]
    axes: str | None = None
    level: int = 0
    nan_policy: str = "refuse"
    dtype: str = "float32"
    zarr_format: int = 3

    def __post_init__(self) -> None:
        for name, low in (("samples", 1), ("steps", 1), ("batch_size", 1), ("threads", 1)):
            _check_int(name, getattr(self, name), low=low, optional=True)
        _check_int("block_size", self.block_size, low=MIN_BLOCK, optional=True)
        _check_int("context", self.context, low=0, optional=True)
        _check_int("seed", self.seed, low=0)
        _check_int("level", self.level, low=0)
        _check_choice("sampler", self.sampler, SAMPLERS, optional=True)
        _check_choice("fuse", self.fuse, FUSE_MODES)
        _check_choice("device", self.device, DEVICES)
        _check_choice("plane noise", self.plane_noise, PLANE_NOISE)
        _check_choice("sample noise", self.sample_noise, SAMPLE_NOISE, optional=True)
        _check_choice("nan policy", self.nan_policy, NAN_POLICIES)
        _check_choice("output dtype", self.dtype, OUTPUT_DTYPES)
        check_format(self.zarr_format)
        _check_fraction("strength", self.strength, low_open=True)
        _check_fraction("skip_background", self.skip_background, low_open=False)
        if self.consistency is not None:
            check_consistency(self.consistency)
        if self.uncertainty is not None and not isinstance(self.uncertainty, bool):
            raise TilesrError(f"uncertainty must be true, false or None, got {self.uncertainty!r}")
        for name in ("tile_size", "overlap"):  # their ranges depend on the model: make_plan
            _check_int(name, getattr(self, name), low=None, optional=True)
        if self.axes is not None:
            if not isinstance(self.axes, str) or not self.axes:
                raise TilesrError(f"axes must be letters from {AXIS_LETTERS!r}, got {self.axes!r}")
            object.__setattr__(self, "axes", self.axes.lower())


def _check_int(name: str, value: Any, *, low: int | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    label = name.replace("_", " ")
    if not isinstance(value, int) or isinstance(value, bool):
        raise TilesrError(f"{label} must be an integer, got {value!r}")
    if low is not None and value < low:
        what = "a positive integer" if low == 1 else f"an integer of at least {low}"
        raise TilesrError(f"{label} must be {what}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[Any, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    check_choice(name.replace("_", " "), value, choices)


def _check_fraction(name: str, value: Any, *, low_open: bool) -> None:
    if value is None:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
        return
    interval = "(0, 1]" if low_open else "[0, 1]"
    raise TilesrError(f"{name.replace('_', ' ')} must be in {interval}, got {value!r}")
