"""Where in scale is the restorations' error, with and without data consistency?

    python tools/probe_error_bands.py [--diffusion runs/NAME.onnx]   # validation data

A probe on the W2S validation fields (37-38, 3 channels, 512 x 512): each field is
restored by the diffusion model (its default sampling) and the regression baseline (one
evaluation), with data consistency off and at 3 input pixels, scored as
``tilesr evaluate`` scores (the restoration fitted to the percentile-normalised truth),
and the error's mean square is split into radial spatial-frequency bands (cycles per HR
pixel; the lowest band, below 0.005, is the scale of the whole field, above 200 px),
averaged over the fields. Also: the mean of truth minus restoration on 16 x 16 px averages
per decile of the restoration's intensity (an intensity-dependent bias shows there).
Writes docs/benchmarks/error-bands-validation.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from bench_care import MODELS, ROOT, Setting, restore_one, validation_w2s
from scipy import ndimage

from tilesr.metrics import normalize_pair

#: band edges in cycles per HR pixel (radial); the first band holds the mean (0)
EDGES = (0.0, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.25, 0.71)
SMOOTH_PX = 16


def band_power(image: np.ndarray) -> np.ndarray:
    """Mean square of ``image`` in each radial frequency band of :data:`EDGES` (they sum
    to ``mean(image**2)``, Parseval)."""
    power = np.abs(np.fft.rfft2(image)) ** 2 / image.size**2
    # the half spectrum of a real image: every column but the first (and Nyquist) twice
    power[:, 1 : (image.shape[1] + 1) // 2] *= 2
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.rfftfreq(image.shape[1])[None, :]
    radius = np.hypot(ky, kx)
    index = np.digitize(radius, EDGES[1:-1], right=True)
    return np.bincount(index.ravel(), weights=power.ravel(), minlength=len(EDGES) - 1)


def decile_bias(pred: np.ndarray, gt: np.ndarray) -> list[float]:
    """Mean of (truth - restoration) on :data:`SMOOTH_PX` averages, per restoration decile."""
    smooth_pred = ndimage.uniform_filter(pred, SMOOTH_PX)
    smooth_gt = ndimage.uniform_filter(gt, SMOOTH_PX)
    decile = np.digitize(smooth_pred, np.quantile(smooth_pred, np.linspace(0.1, 0.9, 9)))
    return [float(np.mean((smooth_gt - smooth_pred)[decile == d])) for d in range(10)]


def probe(pairs: list, model: Path, setting: Setting) -> dict:
    power = np.zeros(len(EDGES) - 1)
    bias = []
    for pair in pairs:
        mean = restore_one(pair.lr, model, setting, 2)[0]
        fit = normalize_pair(mean, pair.hr)
        power += band_power(fit.gt - fit.pred)
        bias.append(decile_bias(fit.pred, fit.gt))
    return {
        "mse_per_band": (power / len(pairs)).tolist(),
        "mse": float(power.sum() / len(pairs)),
        "bias_per_decile": np.mean(bias, axis=0).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--diffusion", type=Path, default=MODELS / "default.onnx")
    parser.add_argument("--regression", type=Path, default=MODELS / "regression.onnx")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "docs" / "benchmarks" / "error-bands-validation.json"
    )
    args = parser.parse_args()
    pairs = validation_w2s(2, quick=False)
    rows = {}
    for kind, model, text in (
        ("diffusion", args.diffusion, "model"),
        ("regression", args.regression, "1"),
    ):
        for sigma in (0, 3):
            key = f"{kind}, consistency {sigma}"
            rows[key] = probe(pairs, model, Setting.parse(f"{text}+c{sigma}"))
            print(key, np.round(np.array(rows[key]["mse_per_band"]) * 1e6, 1).tolist(), flush=True)
    command = " ".join(["python", "tools/probe_error_bands.py", *sys.argv[1:]])
    record = {"command": command, "band_edges_cycles_per_px": EDGES, "rows": rows}
    args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
