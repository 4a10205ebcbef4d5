"""Diffusion maths in NumPy: schedules, samplers, keyed noise and the sampling loop.

Nothing here knows whether the network is PyTorch or ONNX: the caller owns the loop
and passes noise predictions in.
"""

from tilesr.diffusion.samplers import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverPP2MSampler,
    Sampler,
    StepOutput,
    make_sampler,
)
from tilesr.diffusion.schedule import NoiseSchedule, build_schedule

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverPP2MSampler",
    "NoiseSchedule",
    "Sampler",
    "StepOutput",
    "build_schedule",
    "make_sampler",
]
