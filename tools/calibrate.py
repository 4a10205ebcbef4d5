"""Fit a model's uncertainty calibration on its validation data (never on test data).

    python tools/calibrate.py --model runs/bundled-best.onnx [--setting ddim:2x8]

Restores the validation sets of tools/bench_care.py (W2S fields 37-38, simulated images
with the training run's validation seeds) at the model's default sampling (or
``--setting``) and, for each Gaussian pooling width in ``--pools``, the factor that
makes the 1-sigma coverage of the real (W2S) validation images exactly 68.27 %
(the 68.27 % quantile of |error| / sigma). It prints coverage at 1 and 2 sigma and the
Spearman rank correlation of RMS error vs RMS sigma over 16x16 patches for each
candidate, and recommends the pooling with the best 2-sigma coverage. Record the result
in the training config's ``export.uncertainty_scale`` / ``export.uncertainty_pool`` and
export again; writes the table to ``--json``.

The sigma used here is :func:`tilesr.diffusion.uncertainty.predictive_std` with scale 1:
the engine's uncertainty for a model with ``uncertainty_scale`` 1 and no pooling, pooled
here afterwards (pooling is linear in the variance, so this equals the engine's pooled
map away from block edges; the validation images are single blocks).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from bench_care import Setting, datasets, restore_one, validation_sets
from scipy import ndimage

from tilesr.calibration import calibration, calibration_terms
from tilesr.data.datasets import ImagePair
from tilesr.denoisers.onnx_backend import OnnxDenoiser
from tilesr.diffusion.uncertainty import POOL_TRUNCATE
from tilesr.metrics import normalize_pair, percentile_normalize

#: a Gaussian's coverage of +-1 and +-2 sigma
TARGETS = (0.6827, 0.9545)


def fitted_scale(z: np.ndarray, fit: str) -> float:
    """The factor c such that ``z / c`` (|error| / uncalibrated sigma) covers best.

    ``fit`` "1sigma": exactly 68.27 % within 1; "joint": least squares of the coverage
    within 1 and 2 to a Gaussian's, over the quantiles of ``z`` that can be optimal.
    """
    z = np.sort(z)
    if fit == "1sigma":
        return float(np.quantile(z, TARGETS[0]))
    candidates = np.quantile(z, np.linspace(0.55, 0.80, 251))

    def cost(c: float) -> float:
        inside = np.searchsorted(z, [c, 2.0 * c], side="right") / z.size
        return float(np.sum((inside - np.asarray(TARGETS)) ** 2))

    return float(min(candidates, key=cost))


def uncalibrated_model(model: Path, folder: Path) -> Path:
    """A copy of ``model`` whose metadata says scale 1 and no pooling."""
    import onnx

    meta = replace(OnnxDenoiser(model).metadata, uncertainty_scale=1.0, uncertainty_pool=0.0)
    proto = onnx.load(str(model))
    onnx.helper.set_model_props(proto, meta.to_props())
    path = folder / "uncalibrated.onnx"
    onnx.save(proto, str(path))
    return path


@dataclass(frozen=True)
class Restored:
    """One image's GT-normalised error, its sigma on that scale and its input's noise."""

    name: str
    error: np.ndarray
    sigma: np.ndarray
    noise: float


def errors_and_sigmas(
    model: Path, setting: Setting, threads: int, sets: dict[str, list[ImagePair]]
) -> dict[str, list[Restored]]:
    """Per set: every image restored with ``setting``, as :class:`Restored`."""
    out: dict[str, list[Restored]] = {}
    for name, pairs in sets.items():
        for pair in pairs:
            mean, sigma, _, _ = restore_one(pair.lr, model, setting, threads)
            fit = normalize_pair(mean, pair.hr)
            restored = Restored(
                pair.name, fit.gt - fit.pred, abs(fit.pred_scale) * sigma, input_noise(pair.lr)
            )
            out.setdefault(name, []).append(restored)
    return out


def input_noise(lr: np.ndarray) -> float:
    """Noise std of ``lr`` in units of its 0.1-99.9 percentile range (Immerkaer 1996:
    the mean absolute response to a Laplacian-difference mask, which cancels smooth
    structure)."""
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    response = ndimage.convolve(percentile_normalize(lr), mask)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.mean(np.abs(response)) / 6)


def tail_ratio(z: np.ndarray) -> float:
    """The 95.45 % quantile of ``z`` over its 68.27 % quantile: 2 for Gaussian errors.

    Above 2 no single scale gets both the 1- and the 2-sigma coverage of a Gaussian.
    """
    one, two = np.quantile(z, TARGETS)
    return float(two / one)


def per_image(images: list[Restored], pool: float, scale: float) -> list[dict]:
    """Each image's coverage at the fitted ``scale``, the scale it alone would need and
    the :func:`tail_ratio` of its errors."""
    rows = []
    for im in images:
        z = _z(im, pool)
        row = {"image": im.name, "input_noise": im.noise}
        row["scale_for_1sigma"] = float(np.quantile(z, TARGETS[0]))
        row["tail_ratio"] = tail_ratio(z)
        row.update(calibration([calibration_terms(im.error, scale * pooled(im.sigma, pool))]))
        rows.append(row)
    return rows


def pooled(sigma: np.ndarray, pool: float) -> np.ndarray:
    if pool <= 0:
        return sigma
    var = ndimage.gaussian_filter(sigma.astype(np.float64) ** 2, pool, truncate=POOL_TRUNCATE)
    return np.sqrt(var)


def scores(images: list[Restored], pool: float, scale: float) -> dict[str, float]:
    terms = [calibration_terms(im.error, scale * pooled(im.sigma, pool)) for im in images]
    return calibration(terms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--setting", default="model", help="sampler:STEPSxSAMPLES or 'model'")
    parser.add_argument("--pools", default="0,1,2,4", help="Gaussian pooling sigmas (px)")
    parser.add_argument("--fit", choices=("joint", "1sigma"), default="joint")
    parser.add_argument(
        "--report-test",
        action="store_true",
        help="also report (never fit) the W2S test fields' coverage per image at the fit",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model = uncalibrated_model(args.model, Path(tmp))
        scale_factor = OnnxDenoiser(model).metadata.scale
        sets = validation_sets(scale_factor, False)
        if args.report_test:
            sets["test W2S 39-40"] = datasets(scale_factor, False, None)["W2S 39-40"]
        data = errors_and_sigmas(model, Setting.parse(args.setting), args.threads, sets)
    real = next(k for k in data if k.startswith("val W2S"))  # fitted on, and only on, this
    table = []
    for pool in (float(p) for p in args.pools.split(",")):
        z = np.concatenate([_z(im, pool) for im in data[real]])
        scale = fitted_scale(z, args.fit)
        row = {"pool": pool, "scale": scale}
        row.update({name: scores(pairs, pool, scale) for name, pairs in data.items()})
        table.append(row)
        print(json.dumps(row))
    best = min(table, key=lambda r: _miss(r[real]))
    print(f"recommended: uncertainty_pool {best['pool']}, uncertainty_scale {best['scale']:.3f}")
    if args.json is not None:
        command = " ".join(["python", "tools/calibrate.py", *sys.argv[1:]])
        record = {"setting": args.setting, "fit": args.fit, "rows": table, "best": best}
        record["per_image"] = {
            name: per_image(images, best["pool"], best["scale"])
            for name, images in data.items()
            if "W2S" in name
        }
        record["command"] = command
        args.json.write_text(json.dumps(record))


def _z(image: Restored, pool: float) -> np.ndarray:
    """|error| / uncalibrated sigma of every pixel of one image."""
    return (np.abs(image.error) / np.maximum(pooled(image.sigma, pool), 1e-12)).ravel()


def _miss(cover: dict[str, float]) -> float:
    """Squared distance of a row's 1- and 2-sigma coverage to a Gaussian's."""
    got = (cover["cover_1sigma"], cover["cover_2sigma"])
    return sum((g - t) ** 2 for g, t in zip(got, TARGETS, strict=True))


if __name__ == "__main__":
    main()
