"""`tilesr demo`: simulate a widefield field, restore it with the bundled model, show it.

Everything runs offline: the input and its ground truth come from the built-in
simulator (:func:`tilesr.simulate.simulate_large`), the model is the bundled
``tilesr/bundled/default.onnx`` unless another is given, and the restoration goes through
the same :func:`tilesr.restore_file.restore_file` as ``tilesr restore``.

Output folder::

    input.ome.zarr         the simulated noisy widefield image (LR)
    ground_truth.ome.zarr  the clean high-resolution structures it was made from
    restored.ome.zarr      the restoration and its uncertainty (channels 0 and 1)
    figure.png             input | restored | uncertainty | ground truth, with zoomed insets
    metrics.json           bicubic baseline and restoration against the ground truth
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tilesr.errors import TilesrError

PANEL_TITLES = ("input (bicubic)", "restored", "uncertainty (std)", "ground truth")


@dataclass(frozen=True)
class DemoReport:
    """Where the demo wrote its results, and the headline metrics."""

    out_dir: Path
    figure: Path
    metrics: dict[str, dict[str, float]]
    restore_seconds: float

    def summary(self) -> str:
        base, ours = self.metrics["bicubic"], self.metrics["restored"]
        return (
            f"demo written to {self.out_dir}: PSNR {base['psnr']:.2f} -> {ours['psnr']:.2f} dB, "
            f"SSIM {base['ssim']:.3f} -> {ours['ssim']:.3f} (bicubic -> restored); "
            f"restoration took {self.restore_seconds:.0f} s; figure: {self.figure}"
        )


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    size: int = 1024,
    samples: int | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    noise_level: int = 5,
    seed: int = 0,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> DemoReport:
    """Simulate, restore and evaluate one field of view of ``size`` x ``size`` output pixels.

    Parameters
    ----------
    out_dir
        Folder for the results; an existing non-empty folder is refused unless
        ``overwrite`` (then only the files the demo writes are replaced).
    model
        ONNX model (default: the bundled one).
    size
        Side of the restored image in output (high-resolution) pixels.
    samples, steps, sampler
        Samples averaged per pixel, network evaluations per sample, and the sampler
        (None: the model's defaults, what `tilesr restore` uses).
    noise_level
        Simulated photon level, 1 (noisiest) to 9 (cleanest).
    """
    from tilesr.engine.model import open_model
    from tilesr.options import RestoreOptions
    from tilesr.restore_file import DEFAULT_MODEL, restore_file

    out = Path(out_dir)
    model_path = Path(model) if model is not None else DEFAULT_MODEL
    if not model_path.is_file():
        raise TilesrError(f"model file not found: {model_path}")
    if size < 64:
        raise TilesrError(f"demo size must be at least 64 pixels, got {size}")
    _prepare(out, overwrite=overwrite)
    # the simulator's ground truth has none of the smooth background its forward model
    # adds to the input, so the input is not what the target looks like on large
    # scales: restore without data consistency (tilesr.diffusion.consistency)
    options = RestoreOptions(
        samples=samples, steps=steps, sampler=sampler, seed=seed, uncertainty=True, consistency=0.0
    )
    opened = open_model(model_path, options, scheduler=scheduler)  # once, for both
    scale = opened.metadata.scale
    _simulate(out, size - size % scale, scale=scale, noise_level=noise_level, seed=seed)
    report = restore_file(
        out / "input.ome.zarr",
        out / "restored.ome.zarr",
        options,
        model=opened,
        scheduler=scheduler,
        overwrite=True,
        progress=progress,
    )
    metrics, figure = _evaluate(out, scale)
    return DemoReport(out, figure, metrics, report.seconds)


def _simulate(out: Path, size: int, *, scale: int, noise_level: int, seed: int) -> None:
    """The simulated input (LR) and its ground truth (HR), as OME-Zarr images."""
    from tilesr.io import write_ome_zarr
    from tilesr.simulate import HR_PIXEL_UM, simulate_large

    lr, hr = simulate_large((size, size), scale=scale, noise_level=noise_level, seed=seed)
    # the input is `scale` times coarser
    for name, image, px in (("input", lr, HR_PIXEL_UM * scale), ("ground_truth", hr, HR_PIXEL_UM)):
        write_ome_zarr(
            out / f"{name}.ome.zarr",
            image,
            axes="yx",
            pixel_sizes={"y": px, "x": px},
            units={"y": "micrometer", "x": "micrometer"},
            overwrite=True,
        )


def _evaluate(out: Path, scale: int) -> tuple[dict[str, dict[str, float]], Path]:
    """metrics.json and figure.png from the files the demo wrote."""
    from tilesr.io import open_image, open_restored

    def read(name: str) -> NDArray[np.float32]:
        return np.asarray(open_image(out / name).data, dtype=np.float32)

    lr_img, gt = read("input.ome.zarr"), read("ground_truth.ome.zarr")
    parts = open_restored(out / "restored.ome.zarr")
    restored = np.asarray(parts.image, dtype=np.float32)
    std = np.asarray(parts.uncertainty, dtype=np.float32)
    metrics = evaluate_demo(lr_img, restored, gt, scale=scale)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    figure = out / "figure.png"
    plot_demo(figure, lr_img, restored, std, gt, scale=scale, metrics=metrics)
    return metrics, figure


def evaluate_demo(
    lr: NDArray[np.float32], restored: NDArray[np.float32], gt: NDArray[np.float32], *, scale: int
) -> dict[str, dict[str, float]]:
    """Metrics of the bicubic baseline and of the restoration against the ground truth.

    Both are compared as ``tilesr evaluate`` does by default (CARE's evaluation: GT
    percentile-normalised, prediction fitted by scale and offset).
    """
    from tilesr.data.resize import upsample_bicubic
    from tilesr.metrics import image_metrics, normalize_pair

    result = {}
    for name, pred in (("bicubic", upsample_bicubic(lr, scale)), ("restored", restored)):
        pair = normalize_pair(pred, gt, mode="match")
        result[name] = image_metrics(pair.pred, pair.gt, data_range=pair.data_range).as_dict()
    return result


def plot_demo(
    path: Path,
    lr: NDArray[np.float32],
    restored: NDArray[np.float32],
    std: NDArray[np.float32],
    gt: NDArray[np.float32],
    *,
    scale: int,
    metrics: dict[str, dict[str, float]],
) -> None:
    """Four panels with a zoomed crop of each underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from tilesr.data.resize import upsample_bicubic

    images = (upsample_bicubic(lr, scale), restored, std, gt)
    h, w = gt.shape
    zoom = max(32, min(h, w) // 6)
    y0, x0 = _busiest_window(gt, zoom)
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.6), gridspec_kw={"height_ratios": [1, 1]})
    for col, (title, img) in enumerate(zip(PANEL_TITLES, images, strict=True)):
        lo, hi = np.percentile(img, [0.5, 99.8])
        cmap = "magma" if col == 2 else "gray"
        for row, view in enumerate((img, img[y0 : y0 + zoom, x0 : x0 + zoom])):
            ax = axes[row, col]
            ax.imshow(view, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, col].add_patch(
            Rectangle((x0, y0), zoom, zoom, fill=False, edgecolor="cyan", linewidth=1.2)
        )
        label = title
        key = {0: "bicubic", 1: "restored"}.get(col)
        if key is not None:
            m = metrics[key]
            label += f"\nPSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}"
        axes[0, col].set_title(label, fontsize=11)
    axes[1, 0].set_ylabel(f"zoom ({zoom}x{zoom} px)")
    fig.suptitle("tilesr demo: simulated widefield -> restored (bundled model)", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _busiest_window(image: NDArray[np.float32], size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` window with the most structure, on a coarse grid."""
    best, corner = -1.0, (0, 0)
    step = max(size // 2, 1)
    for y in range(0, image.shape[0] - size + 1, step):
        for x in range(0, image.shape[1] - size + 1, step):
            score = float(image[y : y + size, x : x + size].std())
            if score > best:
                best, corner = score, (y, x)
    return corner


_DEMO_OUTPUTS = (
    "input.ome.zarr",
    "ground_truth.ome.zarr",
    "restored.ome.zarr",
    "figure.png",
    "metrics.json",
)


def _prepare(out: Path, *, overwrite: bool) -> None:
    """Refuse what the demo must not touch, then clear its own earlier outputs."""
    from tilesr.simulate.writers import prepare_output_dir

    if out.exists() and not out.is_dir():
        raise TilesrError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise TilesrError(f"{out} exists and is not empty; use --overwrite to replace the demo")
        unknown = sorted(p.name for p in out.iterdir() if p.name not in _DEMO_OUTPUTS)
        if unknown:
            raise TilesrError(
                f"{out} holds files the demo did not write ({', '.join(unknown[:3])}); "
                "choose another folder"
            )
    prepare_output_dir(out, overwrite=overwrite, owned=_DEMO_OUTPUTS)
