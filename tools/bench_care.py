"""tilesr against a CARE-style regression baseline, on data it never trained on.

    python tools/bench_care.py                                   # bundled models
    python tools/bench_care.py --diffusion d.onnx --regression r.onnx --settings ddim:5x4
    python tools/bench_care.py --quick                           # checks the script works

Every image is restored whole through the engine (``tilesr.restore``: tiles, fused
blending, global normalisation), as ``tilesr restore`` would, and scored as
``tilesr evaluate`` scores by default (GT percentile-normalised to [0, 1], the
prediction fitted to it by a least-squares scale and offset). The uncertainty (std
over samples) is put on the same scale by the fitted scale factor.

Held-out sets, never used for training or tuning (``configs/bundled.yaml`` and
``configs/regression.yaml`` train on W2S fields 1-36, validate on 37-38, and on
simulated seeds below 10 000):

* ``W2S 39-40``: the 6 full 512x512 fields (2 fields x 3 channels); the single noisy
  frame binned 2x2 is the LR input, the 400-frame average the target.
* ``simulated L2/L5/L8``: the built-in simulator at photon levels 2, 5, 8 with test seeds.
* out of distribution, chosen before any tuning and never tuned on:
  ``OOD nuclei``: the StarDist sample image of nuclei (``stardist/data/images/img2d.tif``
  in the stardist wheel; large round blobs, a structure the training set lacks) through
  the simulator's forward model at photon level 4, and ``OOD confocal->STED``: the real
  TA-GAN pairs, confocal binned 2x2 as input, STED as target (another modality and
  resolution regime; no restoration from confocal reaches STED, so this measures
  whether a model makes things worse than bicubic).

Calibration (diffusion rows with more than one sample): the fraction of GT pixels within
1 and 2 predicted std of the mean (68.3 % / 95.4 % for a calibrated Gaussian), and the
Spearman rank correlation between the RMS error and the RMS std of 16x16 patches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from _bench_common import (
    flops_per_tile_onnx,
    machine_info,
    markdown_report,
    now_iso,
    replace_region,
)

import tilesr
from tilesr.calibration import CalibrationTerms, calibration, calibration_terms
from tilesr.data.datasets import ImagePair, load_confocal_sted, load_w2s
from tilesr.data.resize import bin_mean, upsample_bicubic
from tilesr.denoisers.onnx_backend import OnnxDenoiser
from tilesr.metrics import image_metrics, normalize_pair
from tilesr.simulate import degrade, simulate_pairs

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
MODELS = ROOT / "tilesr" / "bundled"
TEST_SEED = 90_000
NUCLEI_NAME = "stardist/data/images/img2d.tif"
DEFAULT_SETTINGS = ("model", "dpmpp:20x1", "ddim:1x1", "ddim:5x4", "ddim:10x2", "ddim:4x5")


#: suffix of a setting's sample count -> sample noise ("ddim:4x4a": antithetic pairs)
NOISE_SUFFIX = {"a": "antithetic", "i": "independent"}


@dataclass(frozen=True)
class Setting:
    """One way of running a model: sampler, steps x samples, sample noise and data
    consistency (None: the model's)."""

    label: str
    sampler: str | None
    steps: int | None
    samples: int | None
    sample_noise: str | None = None
    consistency: float | None = None

    @classmethod
    def parse(cls, text: str) -> Setting:
        """``model`` or ``sampler:STEPSxSAMPLES`` with an optional ``a`` (antithetic) or
        ``i`` (independent) after the sample count (none: the model's sample noise), and
        an optional ``+cSIGMA`` (data consistency at SIGMA input pixels; ``+c0``: off)."""
        text, _, dc = text.partition("+c")
        consistency = float(dc) if dc else None
        suffix = "" if consistency is None else f" + consistency {consistency:g}"
        if text in ("model", "1"):  # "1": a regression model's one evaluation
            label = "model default" if text == "model" else "one evaluation"
            return cls(label + suffix, None, None, None, consistency=consistency)
        name, _, rest = text.partition(":")
        steps, _, samples = rest.partition("x")
        noise = NOISE_SUFFIX.get(samples[-1:]) if samples else None
        count = samples[:-1] if noise else samples
        label = f"{name} {steps}x{count}" + (f" {noise}" if noise else "") + suffix
        return cls(label, name, int(steps), int(count), noise, consistency)


def validation_sets(scale: int, quick: bool) -> dict[str, list[ImagePair]]:
    """The training run's own validation data, for choosing defaults and calibrating.

    W2S fields 37-38 and simulated images with the bundled config's validation seeds
    (2011-2014, levels 2/4/6/8): never trained on, and distinct from the test sets.
    """
    sets = {"val W2S 37-38": validation_w2s(scale, quick)}
    sets["val simulated"] = [
        pair
        for level, seed in zip((2, 4, 6, 8), (2011, 2012, 2013, 2014), strict=True)
        for pair in simulate_pairs(1, size=256, scale=scale, noise_level=level, seed=seed)
    ]
    return sets


def validation_w2s(scale: int, quick: bool) -> list[ImagePair]:
    """W2S validation fields 37-38 (37 alone if ``quick``), the input binned to ``scale``."""
    w2s = load_w2s(SHARED / "w2s", fields=(37,) if quick else (37, 38))
    return [ImagePair(bin_mean(p.lr, scale), p.hr, p.name) for p in w2s]


def datasets(scale: int, quick: bool, nuclei: Path | None) -> dict[str, list[ImagePair]]:
    """The held-out and out-of-distribution sets (see the module docstring)."""
    sets: dict[str, list[ImagePair]] = {}
    fields = (39,) if quick else (39, 40)
    w2s = load_w2s(SHARED / "w2s", fields=fields, channels=(0,) if quick else (0, 1, 2))
    sets["W2S 39-40"] = [ImagePair(bin_mean(p.lr, scale), p.hr, p.name) for p in w2s]
    for level in (5,) if quick else (2, 5, 8):
        sets[f"simulated L{level}"] = simulate_pairs(
            1 if quick else 2, size=256, scale=scale, noise_level=level, seed=TEST_SEED + level
        )
    if nuclei is not None:
        hr = np.squeeze(tifffile.imread(nuclei)).astype(np.float32)
        hr = hr[:256, :256] if quick else hr
        sets["OOD nuclei"] = [degrade(hr, scale=scale, noise_level=4, seed=TEST_SEED, name="img2d")]
    sted = load_confocal_sted(sorted((SHARED / "confocal_sted").glob("*.tif")))
    pairs = []
    for p in sted[:1] if quick else sted:
        h, w = (n - n % (2 * scale) for n in p.lr.shape)
        pairs.append(ImagePair(bin_mean(p.lr[:h, :w], scale), p.hr[:h, :w], p.name))
    sets["OOD confocal->STED"] = pairs
    return sets


def score(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    pair = normalize_pair(pred, gt)
    return image_metrics(pair.pred, pair.gt, data_range=1.0).as_dict()


def image_calibration_terms(pred: np.ndarray, std: np.ndarray, gt: np.ndarray) -> CalibrationTerms:
    """One image's calibration terms, its std put on the fitted prediction's scale."""
    pair = normalize_pair(pred, gt)
    return calibration_terms(pair.gt - pair.pred, abs(pair.pred_scale) * np.asarray(std))


def restore_one(lr: np.ndarray, model: Path, setting: Setting, threads: int):
    """Mean and std (raw units) of one restoration through the engine, and its wall time."""
    import dask

    start = time.perf_counter()
    options = tilesr.RestoreOptions(
        sampler=setting.sampler,
        steps=setting.steps,
        samples=setting.samples,
        sample_noise=setting.sample_noise,
        consistency=setting.consistency,
        uncertainty=True,
        threads=threads,
    )
    result = tilesr.restore(lr.astype(np.float32), str(model), options)
    with dask.config.set(scheduler="synchronous"):
        mean, std = dask.compute(result.image, result.uncertainty)
    settings = result.plan.record()  # the effective sampling: the model's defaults filled in
    return np.asarray(mean), np.asarray(std), time.perf_counter() - start, settings


def evaluate_model(
    sets: dict[str, list[ImagePair]], model: Path, setting: Setting, threads: int
) -> dict[str, dict[str, float]]:
    """Scores, calibration, evaluations per pixel and seconds per 512^2, per set."""
    out: dict[str, dict[str, float]] = {}
    for name, pairs in sets.items():
        rows, terms, seconds, pixels = [], [], 0.0, 0
        for pair in pairs:
            mean, std, dt, settings = restore_one(pair.lr, model, setting, threads)
            rows.append(score(mean, pair.hr))
            if settings["samples"] > 1:
                terms.append(image_calibration_terms(mean, std, pair.hr))
            seconds += dt
            pixels += mean.size
        out[name] = _mean(rows)
        out[name]["evals_per_pixel"] = settings["samples"] * settings["steps"]
        out[name]["seconds_per_512sq"] = seconds * 512**2 / pixels
        if terms:
            out[name].update(calibration(terms))
        print(f"  {setting.label:16s} {name:20s} PSNR {out[name]['psnr']:.2f}", flush=True)
    return out


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _dataset_file(reference: str) -> Path | None:
    """A registered dataset file if it is on this machine (`tilesr data fetch NAME`)."""
    from tilesr.data.fetch import resolve_reference
    from tilesr.errors import TilesrError

    try:
        return resolve_reference(reference, base_dir=ROOT)
    except TilesrError:
        return None


def bicubic_rows(sets: dict[str, list[ImagePair]], scale: int) -> dict[str, dict[str, float]]:
    return {
        name: {
            **_mean([score(upsample_bicubic(p.lr, scale), p.hr) for p in pairs]),
            "evals_per_pixel": 0,
        }
        for name, pairs in sets.items()
    }


GOALS = (
    "tilesr's default beats the regression baseline by >= 1.0 dB PSNR and >= 0.02 SSIM "
    "on W2S; its best setting by >= 1.5 dB",
    "out of distribution: never below bicubic, within 0.5 dB of the regression baseline",
    "calibration: 1-sigma coverage within 0.03 of 68.3 %, 2-sigma within 0.02 of 95.4 %, "
    "patch Spearman >= 0.8",
)


def goal_checks(results: dict) -> list[str]:
    """One line per goal of the quality issue: met or not, with the numbers."""
    reg = results["rows"]["regression"]
    default = results["rows"]["diffusion: model default"]
    w2s = "W2S 39-40"
    d_psnr = default[w2s]["psnr"] - reg[w2s]["psnr"]
    d_ssim = default[w2s]["ssim"] - reg[w2s]["ssim"]
    best = max((r[w2s]["psnr"], k) for k, r in results["rows"].items() if k.startswith("diffusion"))
    lines = [
        f"1. W2S: default {d_psnr:+.2f} dB / {d_ssim:+.3f} SSIM vs regression "
        f"({'met' if d_psnr >= 1.0 and d_ssim >= 0.02 else 'not met'}); best setting "
        f"({best[1]}) {best[0] - reg[w2s]['psnr']:+.2f} dB "
        f"({'met' if best[0] - reg[w2s]['psnr'] >= 1.5 else 'not met'})"
    ]
    for key in (k for k in results["rows"] if k.startswith("regression +")):
        same = results["rows"][key][w2s]
        lines.append(
            f"1 (against tilesr's own {key}, not CARE-style). W2S: default "
            f"{default[w2s]['psnr'] - same['psnr']:+.2f} dB / "
            f"{default[w2s]['ssim'] - same['ssim']:+.3f} SSIM"
        )
    ood = [k for k in default if k.startswith("OOD")]
    parts, ok = [], True
    for k in ood:
        vs_bic = default[k]["psnr"] - results["rows"]["bicubic"][k]["psnr"]
        vs_reg = default[k]["psnr"] - reg[k]["psnr"]
        ok &= vs_bic >= 0 and vs_reg >= -0.5
        parts.append(f"{k}: {vs_bic:+.2f} dB vs bicubic, {vs_reg:+.2f} dB vs regression")
    lines.append(f"2. {'; '.join(parts)} ({'met' if ok else 'not met'})")
    parts, ok = [], True
    for k, r in default.items():
        if "cover_1sigma" not in r:
            continue
        ok &= abs(r["cover_1sigma"] - 0.683) <= 0.03 and abs(r["cover_2sigma"] - 0.954) <= 0.02
        ok &= r["spearman_patch"] >= 0.8
        parts.append(
            f"{k}: {100 * r['cover_1sigma']:.1f} % / {100 * r['cover_2sigma']:.1f} %, "
            f"rho {r['spearman_patch']:.2f}"
        )
    verdict = ("met" if ok else "not met") if parts else "no uncertainty at the default"
    lines.append(f"3. {'; '.join(parts) or '-'} ({verdict})")
    return lines


def markdown(results: dict, command: str) -> str:
    sets = list(next(iter(results["rows"].values())))
    lines = [
        "## tilesr vs a CARE-style regression baseline (held-out and out-of-distribution data)",
        "",
        f"Command: `{command}`  ",
        f"{results['meta']['date']}; {results['meta']['cpu']}; "
        f"{results['meta']['seconds']:.0f} s. Models: "
        + "; ".join(
            f"{k} `{v['path']}` (sha256 {v['sha'][:12]})" for k, v in results["models"].items()
        ),
        "",
        "Whole images through the engine (tiles, fused blending); metrics as `tilesr "
        "evaluate` computes them. evals/px = network evaluations per output pixel "
        "(steps x samples, tile overlap not counted); CARE-evals/px = the same in units of "
        "the regression network's FLOPs (a refined model runs its predictor and refiner at "
        "every evaluation); s/512² = wall seconds per 512x512 "
        "output field on this machine. Coverage: fraction of GT pixels within 1 / 2 "
        "predicted std; rho: Spearman of RMS error vs RMS std over 16x16 patches.",
        "",
    ]
    for name in sets:
        lines += [
            f"### {name}",
            "",
            "| method | evals/px | CARE-evals/px | PSNR | SSIM | MS-SSIM | s/512² | 1-sigma | "
            "2-sigma | rho |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method, rows in results["rows"].items():
            r = rows[name]
            cal = (
                f"{100 * r['cover_1sigma']:.1f} % | {100 * r['cover_2sigma']:.1f} % | "
                f"{r['spearman_patch']:.2f}"
                if "cover_1sigma" in r
                else "- | - | -"
            )
            secs = f"{r['seconds_per_512sq']:.1f}" if "seconds_per_512sq" in r else "-"
            lines.append(
                f"| {method} | {r['evals_per_pixel']} | {r.get('care_evals_per_pixel', '-')} | "
                f"{r['psnr']:.2f} | {r['ssim']:.3f} | "
                f"{r['ms_ssim']:.3f} | {secs} | {cal} |"
            )
        lines.append("")
    lines += ["### Goals", "", *[f"- {g}" for g in goal_checks(results)], ""]
    lines += ["![quality vs evaluations](benchmarks/care.png)", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(next(iter(results["rows"].values())))
    fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.4), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        pts = [
            (r[name]["evals_per_pixel"], r[name]["psnr"], k.removeprefix("diffusion: "))
            for k, r in results["rows"].items()
            if k.startswith("diffusion")
        ]
        for x, y, label in pts:
            # hollow: without data consistency
            hollow = "consistency 0" in label
            ax.plot(x, y, "o", mfc="none" if hollow else None)
            ax.annotate(label, (x, y), fontsize=6)
        for key, row in results["rows"].items():
            if key.startswith("regression"):
                ls = "-" if key == "regression" else ":"
                ax.axhline(row[name]["psnr"], color="C3", ls=ls, label=key)
        ax.axhline(results["rows"]["bicubic"][name]["psnr"], color="gray", ls="--", label="bicubic")
        ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("evaluations / pixel")
    axes[0][0].set_ylabel("PSNR (dB)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--diffusion", type=Path, default=MODELS / "default.onnx")
    parser.add_argument("--regression", type=Path, default=MODELS / "regression.onnx")
    parser.add_argument(
        "--settings",
        default=",".join(DEFAULT_SETTINGS),
        help="comma-separated sampler:STEPSxSAMPLES of the diffusion model ('model': its default)",
    )
    parser.add_argument(
        "--regression-settings",
        default="",
        help="more rows of the regression model, comma-separated: '1+cSIGMA' (data "
        "consistency at SIGMA input pixels); the 'regression' row, the goals' baseline, "
        "is always one evaluation without consistency (CARE-style)",
    )
    parser.add_argument(
        "--nuclei",
        type=Path,
        default=_dataset_file("data:stardist_nuclei/img2d.tif"),
        help=f"{NUCLEI_NAME} from the stardist wheel (OOD nuclei; skipped if absent)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="validation: the training run's validation data (choose defaults there)",
    )
    parser.add_argument(
        "--out",
        type=markdown_report,
        default=ROOT / "docs" / "benchmarks.md",
        help="markdown report; only its bench_care region is rewritten",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks" / "care.json")
    parser.add_argument(
        "--replot", action="store_true", help="only redraw the figure from --json's results"
    )
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(args.json.read_text()), args.json.with_suffix(".png"))
        return
    t0 = time.perf_counter()
    scale = OnnxDenoiser(args.diffusion).metadata.scale
    nuclei = args.nuclei if args.nuclei and args.nuclei.exists() else None
    if args.split == "validation":
        sets = validation_sets(scale, args.quick)
    else:
        sets = datasets(scale, args.quick, nuclei)
    rows = {"bicubic": bicubic_rows(sets, scale)}
    # the baseline of the goals: CARE-style, one evaluation and nothing else (what a
    # CARE user gets), whatever the regression model's metadata recommends
    rows["regression"] = evaluate_model(sets, args.regression, Setting.parse("1+c0"), args.threads)
    for text in filter(None, args.regression_settings.split(",")):
        setting = Setting.parse(text)
        label = "regression" + setting.label.removeprefix("one evaluation")
        rows[label] = evaluate_model(sets, args.regression, setting, args.threads)
    # a refined model runs predictor + refiner at every evaluation: count in units of
    # the regression network's cost (FLOPs per tile from the graphs)
    tile = OnnxDenoiser(args.diffusion).metadata.tile_size
    relative_cost = flops_per_tile_onnx(args.diffusion, tile) / flops_per_tile_onnx(
        args.regression, tile
    )
    texts = [t.strip() for t in args.settings.split(",")]
    for text in texts if "model" in texts else ["model", *texts]:
        setting = Setting.parse(text)
        rows[f"diffusion: {setting.label}"] = evaluate_model(
            sets, args.diffusion, setting, args.threads
        )
        for r in rows[f"diffusion: {setting.label}"].values():
            r["care_evals_per_pixel"] = round(r["evals_per_pixel"] * relative_cost, 1)
    models = {
        k: {
            "path": str(p.resolve().relative_to(ROOT) if p.resolve().is_relative_to(ROOT) else p),
            "sha": OnnxDenoiser(p).metadata.weights_sha256,
        }
        for k, p in (("diffusion", args.diffusion), ("regression", args.regression))
    }
    meta = {"date": now_iso(), "cpu": machine_info()["cpu"], "seconds": time.perf_counter() - t0}
    results = {"meta": meta, "models": models, "rows": rows, "relative_cost": relative_cost}
    command = "python tools/bench_care.py " + " ".join(sys.argv[1:])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": command, **results}, indent=1) + "\n")
    if not args.quick and args.split == "test":
        plot(results, args.json.with_suffix(".png"))
        replace_region(args.out, markdown(results, command.strip()), region="bench_care")
    if args.split == "test":
        print("\n".join(goal_checks(results)))


if __name__ == "__main__":
    main()
