"""Quality table of a tilesr model on held-out data -> docs/benchmarks.md and docs/benchmarks/.

    python tools/bench_quality.py                       # the bundled model, reference settings
    python tools/bench_quality.py --quick               # a few minutes: checks the script works
    python tools/bench_quality.py --model m.onnx --full-ddpm-images 2

Held-out data, never seen in training (configs/bundled.yaml):
  * simulated pairs with seeds the training never used, at noise levels 1..9;
  * W2S fields 39 and 40 (the bundled config trains on 1-36 and validates on 37-38), the
    noisy frame binned 2x2 to the model's LR grid;
  * the confocal/STED validation stacks of ../shared/data/confocal_sted (confocal binned 2x2).

Every image is a centre crop of CROP x CROP output pixels restored in one piece with
:func:`tilesr.diffusion.sampling.sample` (one tile, so this measures the model and the
sampler, not the engine's tiling). Metrics are computed as `tilesr evaluate` does by
default: GT percentile-normalised, each prediction fitted to it by scale and offset.

All rows sample at the model's default strength (``--strength`` to change it) and a
sweep over strengths shows why that default. Rows: the bicubic baseline (and for W2S
the raw full-resolution noisy frame), one DDPM
sample over the full schedule, DDPM averages over 2/4/8/16 samples (subsets of one set of
16), and DDIM / DPM-Solver++ averages of 8 samples at 5/10/20/50 steps. The full
schedule is expensive on a CPU (T network evaluations per sample), so it runs on the
first ``--full-ddpm-images`` simulated mid-level images only; the table says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _bench_common import markdown_report, replace_region

from tilesr.data.conditioning import conditioning
from tilesr.data.datasets import ImagePair, load_confocal_sted, load_w2s
from tilesr.data.normalize import percentile_range
from tilesr.data.resize import bin_mean, upsample_bicubic
from tilesr.denoisers.onnx_backend import OnnxDenoiser
from tilesr.diffusion import build_schedule, make_sampler
from tilesr.diffusion.sampling import sample
from tilesr.metrics import image_metrics, normalize_pair
from tilesr.simulate import simulate_pairs

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
FAST_STEPS = (5, 10, 20, 50)
AVERAGES = (1, 2, 4, 8, 16)
TEST_SEED = 90_000  # the bundled config trains on seeds 11-14 and validates on 2011-2014


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[-2:]
    y, x = (h - size) // 2, (w - size) // 2
    return img[..., y : y + size, x : x + size]


def crop_pair(pair: ImagePair, crop: int) -> ImagePair:
    s = pair.scale
    hr = center_crop(pair.hr, crop)
    lr = center_crop(pair.lr, crop // s)
    return ImagePair(lr=lr, hr=hr, name=pair.name)


def model_conditioning(lr: np.ndarray, meta) -> np.ndarray:
    """The conditioning the engine makes of a whole image (its own percentiles)."""
    return conditioning(lr, meta.scale, percentile_range(lr, meta.norm_low, meta.norm_high))


def score(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    pair = normalize_pair(pred, gt, mode="match")
    return image_metrics(pair.pred, pair.gt, data_range=pair.data_range).as_dict()


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def datasets(scale: int, crop: int, quick: bool) -> dict[str, list[ImagePair]]:
    n = 1 if quick else 2
    levels = (1, 5, 9) if quick else tuple(range(1, 10))
    sets: dict[str, list[ImagePair]] = {}
    for level in levels:
        sets[f"simulated level {level}"] = simulate_pairs(
            n, size=crop, scale=scale, noise_level=level, seed=TEST_SEED + level
        )
    w2s_fields = (40,) if quick else (39, 40)
    w2s = load_w2s(SHARED / "w2s", fields=w2s_fields)
    sets["W2S (fields 39-40)"] = [
        ImagePair(lr=bin_mean(p.lr, scale), hr=p.hr, name=p.name) for p in w2s
    ]
    sted = load_confocal_sted(sorted((SHARED / "confocal_sted").glob("*valid*.tif")))
    sets["confocal -> STED (valid)"] = [
        ImagePair(
            lr=bin_mean(p.lr, scale),
            hr=p.hr[: p.lr.shape[0] // scale * scale, : p.lr.shape[1] // scale * scale],
            name=p.name,
        )
        for p in sted
    ]
    return {k: [crop_pair(p, crop) for p in v] for k, v in sets.items()}


def raw_inputs(crop: int) -> list[np.ndarray]:
    """W2S noisy frames at full resolution, the 'raw input' baseline of the issue."""
    fields = (39, 40)
    return [center_crop(p.lr, crop) for p in load_w2s(SHARED / "w2s", fields=fields)]


def run(args: argparse.Namespace) -> dict:
    den = OnnxDenoiser(args.model, threads=args.threads)
    meta = den.metadata
    schedule = build_schedule(meta.schedule)
    crop = args.crop - args.crop % meta.size_multiple
    strength = meta.strength if args.strength is None else args.strength
    sets = datasets(meta.scale, crop, args.quick)
    results: dict = {"sets": {}, "full_ddpm": {}, "strength_sweep": {}, "strength": strength}
    steps_list = (5, 10) if args.quick else FAST_STEPS
    # per set, per image: {row name: scores}; the full-schedule table reuses level 5's
    per_image: dict[str, list[dict[str, dict[str, float]]]] = {}
    for name, pairs in sets.items():
        t0 = time.perf_counter()
        per_image[name] = [
            baseline_and_fast_rows(den, schedule, pair, steps_list, seed=i, strength=strength)
            for i, pair in enumerate(pairs)
        ]
        rows: dict[str, list[dict[str, float]]] = {}
        for image_rows in per_image[name]:
            for key, value in image_rows.items():
                rows.setdefault(key, []).append(value)
        if name.startswith("W2S"):
            rows["raw noisy input (full resolution)"] = [
                score(raw, p.hr) for raw, p in zip(raw_inputs(crop), pairs, strict=False)
            ]
        results["sets"][name] = {k: mean_scores(v) for k, v in rows.items()}
        results["sets"][name]["_n"] = len(pairs)  # type: ignore[assignment]
        print(f"{name}: {len(pairs)} image(s) in {time.perf_counter() - t0:.0f} s", flush=True)
    mid = sets["simulated level 5"]
    t0 = time.perf_counter()
    results["full_ddpm"] = full_schedule_rows(
        den, schedule, mid[: args.full_ddpm_images], per_image["simulated level 5"], args, strength
    )
    results["full_ddpm_seconds"] = time.perf_counter() - t0
    results["evals_within_0.2dB"] = evals_within(results["full_ddpm"], schedule.num_timesteps)
    results["strength_sweep"] = strength_sweep(den, schedule, mid)
    return results


def full_schedule_rows(den, schedule, pairs, fast_rows, args, strength) -> dict:
    """One set of 16 full-schedule DDPM samples per image, averages over its first k."""
    meta = den.metadata
    full_rows: dict[str, list[dict[str, float]]] = {}
    for i, pair in enumerate(pairs):
        cond = model_conditioning(pair.lr, meta)
        samples = full_ddpm_samples(
            den, cond, schedule, args.full_ddpm_samples, seed=i, strength=strength
        )
        for k in AVERAGES:
            if k <= len(samples):
                full_rows.setdefault(f"ddpm {schedule.num_timesteps} steps, avg {k}", []).append(
                    score(samples[:k].mean(axis=0), pair.hr)
                )
        for key, value in fast_rows[i].items():
            full_rows.setdefault(key, []).append(value)
    return {**{k: mean_scores(v) for k, v in full_rows.items()}, "_n": len(pairs)}


def strength_sweep(den, schedule, pairs) -> dict:
    """Why the model's default strength: dpmpp 10 steps, avg 8, at four strengths."""
    meta = den.metadata
    sweep: dict[str, list[dict[str, float]]] = {}
    for i, pair in enumerate(pairs):
        cond = model_conditioning(pair.lr, meta)
        for s in (0.4, 0.6, 0.8, 1.0):
            res = sample(
                den,
                cond,
                make_sampler("dpmpp", schedule, prediction=meta.prediction),
                n_samples=8,
                steps=10,
                seed=i,
                strength=s,
            )
            sweep.setdefault(f"dpmpp 10 steps, avg 8, strength {s}", []).append(
                score(res.mean, pair.hr)
            )
    return {k: mean_scores(v) for k, v in sweep.items()}


def baseline_and_fast_rows(
    den: OnnxDenoiser, schedule, pair: ImagePair, steps_list, *, seed: int, strength: float
) -> dict[str, dict[str, float]]:
    """Scores of the bicubic baseline and of DDIM / DPM-Solver++ 8-sample means."""
    meta = den.metadata
    cond = model_conditioning(pair.lr, meta)
    rows = {"bicubic": score(upsample_bicubic(pair.lr, meta.scale), pair.hr)}
    for sampler_name in ("ddim", "dpmpp"):
        for steps in steps_list:
            res = sample(
                den,
                cond,
                make_sampler(sampler_name, schedule, prediction=meta.prediction),
                n_samples=8,
                steps=steps,
                seed=seed,
                strength=strength,
            )
            rows[f"{sampler_name} {steps} steps, avg 8"] = score(res.mean, pair.hr)
    return rows


def full_ddpm_samples(den, cond, schedule, n, *, seed, strength):
    """n independent DDPM samples over every timestep up to the start (batched), (n, H, W)."""
    sampler = make_sampler("ddpm", schedule, prediction=den.metadata.prediction)
    return sample(den, cond, sampler, n_samples=n, seed=seed, strength=strength).samples


def evals_within(rows: dict, full_steps: int) -> dict[str, int | None]:
    """Fewest steps per sample whose avg-8 PSNR is within 0.2 dB of full-DDPM avg-8."""
    ref = rows.get(f"ddpm {full_steps} steps, avg 8")
    out: dict[str, int | None] = {}
    for sampler_name in ("ddim", "dpmpp"):
        hits = [
            s
            for s in FAST_STEPS
            if (r := rows.get(f"{sampler_name} {s} steps, avg 8")) is not None
            and ref is not None
            and r["psnr"] >= ref["psnr"] - 0.2
        ]
        out[sampler_name] = min(hits) if hits else None
    return out


def plot(results: dict, path: Path, full_steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["full_ddpm"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for sampler_name, marker in (("ddim", "s"), ("dpmpp", "o")):
        pts = [
            (s * 8, rows[k]["psnr"])
            for s in FAST_STEPS
            if (k := f"{sampler_name} {s} steps, avg 8") in rows
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=marker, label=f"{sampler_name}, avg 8")
    ddpm = [
        (k * full_steps, rows[f"ddpm {full_steps} steps, avg {k}"]["psnr"])
        for k in AVERAGES
        if f"ddpm {full_steps} steps, avg {k}" in rows
    ]
    if ddpm:
        ax.plot(*zip(*ddpm, strict=True), marker="^", label=f"ddpm {full_steps} steps, avg k")
    ax.axhline(rows["bicubic"]["psnr"], color="gray", linestyle="--", label="bicubic")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per output pixel (steps x samples)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("quality vs network evaluations (simulated, noise level 5)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(results: dict, meta: dict, command: str, full_steps: int) -> str:
    cols = ("psnr", "ssim", "ms_ssim", "mae", "nrmse")
    lines = [
        "## Quality (held-out data)",
        "",
        f"Command: `{command}`  ",
        f"Model: `{meta['model']}` (sha256 {meta['sha'][:12]}), "
        f"crops of {meta['crop']}x{meta['crop']} output pixels; strength "
        f"{results['strength']}; {meta['machine']}; "
        f"{meta['date']}; {meta['seconds']:.0f} s.",
        "",
        "Metrics as `tilesr evaluate` computes them (GT percentile-normalised to [0, 1], "
        "prediction fitted by scale and offset). Higher PSNR/SSIM/MS-SSIM is better, "
        "lower MAE/NRMSE is better.",
        "",
    ]

    def table(rows: dict) -> list[str]:
        out = ["| method | PSNR | SSIM | MS-SSIM | MAE | NRMSE |", "|---|---|---|---|---|---|"]
        for k, v in rows.items():
            if k.startswith("_"):
                continue
            out.append(f"| {k} | " + " | ".join(f"{v[c]:.3f}" for c in cols) + " |")
        return out

    n_full = results["full_ddpm"].get("_n", 0)
    lines += [
        f"### Full schedule vs fast samplers (simulated, noise level 5, {n_full} image(s))",
        "",
        f"`ddpm {full_steps} steps` visits every timestep up to the start.",
        "",
        *table(results["full_ddpm"]),
        "",
    ]
    ev = results["evals_within_0.2dB"]
    lines += [
        "Fewest steps per sample (x 8 samples) within 0.2 dB PSNR of the "
        f"{full_steps}-step DDPM 8-sample average: "
        + ", ".join(f"{k}: {v if v is not None else 'none of 5-50'}" for k, v in ev.items()),
        "",
        "![quality vs evaluations](benchmarks/quality.png)",
        "",
    ]
    lines += [
        "### Sampling strength (simulated, noise level 5)",
        "",
        "Sampling starts from the conditioning noised to timestep "
        "round(strength x (T-1)); strength 1 is plain DDPM sampling from noise.",
        "",
        *table(results["strength_sweep"]),
        "",
    ]
    for name, rows in results["sets"].items():
        lines += [f"### {name} ({rows.get('_n', '?')} image(s))", "", *table(rows), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "tilesr" / "bundled" / "default.onnx")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--full-ddpm-images", type=int, default=1)
    parser.add_argument("--full-ddpm-samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--strength",
        type=float,
        default=None,
        help="sampling strength (default: the model's metadata)",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--out",
        type=markdown_report,
        default=ROOT / "docs" / "benchmarks.md",
        help="markdown report; only its bench_quality region is rewritten",
    )
    args = parser.parse_args()
    if args.quick:
        args.full_ddpm_samples = min(args.full_ddpm_samples, 2)
    t0 = time.perf_counter()
    results = run(args)
    den = OnnxDenoiser(args.model)
    full_steps = build_schedule(den.metadata.schedule).num_timesteps
    out_dir = args.out.parent / "benchmarks"
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, out_dir / "quality.png", full_steps)
    meta = {
        "model": str(
            args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model
        ),
        "sha": den.metadata.weights_sha256,
        "crop": args.crop,
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "seconds": time.perf_counter() - t0,
    }
    command = "python tools/bench_quality.py " + " ".join(sys.argv[1:])
    (out_dir / "quality.json").write_text(
        json.dumps({"meta": meta, "command": command, **results}, indent=1) + "\n"
    )
    replace_region(
        args.out, markdown(results, meta, command.strip(), full_steps), region="bench_quality"
    )
    print(f"wrote {args.out} and {out_dir / 'quality.json'}")


if __name__ == "__main__":
    main()
