"""Training plots as PNG files (Matplotlib's Agg canvas, no pyplot global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

METRIC_NAMES = ("ssim", "ms_ssim", "psnr", "mae", "nrmse")


def plot_curves(path: Path, history: dict[str, list[float]]) -> None:
    """Training loss and each validation metric against the step, one panel each."""
    panels = [("loss", "loss_step", "loss")] + [(m, "val_step", m) for m in METRIC_NAMES]
    # a fixed layout: constrained layout would cost seconds per call
    fig = Figure(figsize=(3.2 * len(panels), 2.8))
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.16, top=0.9, wspace=0.35)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels))
    for ax, (title, x_key, y_key) in zip(axes, panels, strict=True):
        x, y = history.get(x_key, []), history.get(y_key, [])
        if y:
            ax.plot(x, y, marker="." if len(y) < 30 else None)
        if y_key == "loss" and y and min(y) > 0:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=80)


def plot_examples(
    path: Path,
    rows: Sequence[tuple[str, NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]],
    *,
    step: int,
) -> None:
    """One row per validation image: input (upsampled LR) | output | target, in [-1, 1]."""
    if not rows:
        return
    fig = Figure(figsize=(7.5, 2.6 * len(rows)))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.05, hspace=0.15)
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(len(rows), 3))
    for r, (name, cond, output, target) in enumerate(rows):
        for c, (label, img) in enumerate((("input", cond), ("output", output), ("target", target))):
            ax = axes[r, c]
            ax.imshow(img, cmap="magma", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_title(f"{name}: {label}" if c == 0 else label, fontsize=9)
            ax.set_axis_off()
    fig.suptitle(f"step {step}")
    fig.savefig(path, dpi=80)
