"""Fluorescence microscopy simulator: random structures and a widefield/SIM forward model.

Torch-free (NumPy, SciPy, Dask). Public API:

- :func:`simulate_pairs` small in-memory LR/HR pairs,
- :func:`write_biosr_dataset` a dataset on disk in the BioSR layout,
- :func:`simulate_large` a large lazy, chunk-consistent LR/HR image,
- :func:`degrade` the LR forward model applied to a real HR image.
"""

from __future__ import annotations

from tilesr.simulate.forward import HR_PIXEL_UM, PHOTONS, ForwardModel, degrade
from tilesr.simulate.generate import simulate_large, simulate_pairs
from tilesr.simulate.structures import StructureParams, render_density
from tilesr.simulate.writers import write_biosr_dataset

__all__ = [
    "HR_PIXEL_UM",
    "PHOTONS",
    "ForwardModel",
    "StructureParams",
    "degrade",
    "render_density",
    "simulate_large",
    "simulate_pairs",
    "write_biosr_dataset",
]
