"""How much tile overlap and block context fused sampling needs -> docs/benchmarks.md.

    python tools/bench_overlap.py                        # the bundled model
    python tools/bench_overlap.py --model new.onnx       # another model
    python tools/bench_overlap.py --quick                # a few minutes: checks the script

For every tile overlap (``--overlaps``, default 8,16,24,32) and block context
(``--contexts``, HR pixels sampled around each block, default 0,32,64,128) the tool
restores real images with ``tilesr.restore`` (fused sampling, blocks of two tile strides
so that block edges fall inside the crop, where the default blocks put them: on tile
starts) and compares each result with whole-image (untiled) sampling of the same
conditioning and the same keyed noise (``tilesr.diffusion.sampling.sample``, the model
run once on the whole crop):

* ``dPSNR``: PSNR against the ground truth of the tiled result minus that of the
  untiled one (W2S crops, which have a ground truth: the 400-frame average), metrics as
  ``tilesr evaluate`` computes them;
* ``PSNR vs untiled``: the tiled result against the untiled one (every image; data range
  the intensity range the engine maps to [-1, 1]);
* seam ratios (:func:`tilesr.seams.seam_ratio`) at tile edges and at block edges, and
  the untiled image's ratio at the same positions (what "no seam" reads on that image);
* the work: evaluated tile-pixels per output pixel (per sample and step) at an
  ``--at`` x ``--at`` output (default 8192) with the default block size (planned only).

Images: the BPAE actin crop of ``tests/assets`` (no ground truth) and W2S crops
(``--w2s``, held-out fields; noisy frame binned to the model's LR grid, clean average as
ground truth) from ``../shared/data/w2s``. Writes ``docs/benchmarks/overlap.json`` and the
``bench_overlap`` region of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import tifffile
from _bench_common import (
    BUNDLED_MODEL,
    REPO,
    machine_info,
    markdown_report,
    now_iso,
    replace_region,
)

from tilesr.data.conditioning import conditioning
from tilesr.data.datasets import load_w2s
from tilesr.data.normalize import IntensityRange
from tilesr.data.resize import bin_mean
from tilesr.diffusion.sampling import sample
from tilesr.engine import RestoreOptions, restore
from tilesr.engine.model import EngineModel, open_model
from tilesr.engine.restore import global_intensity_range
from tilesr.metrics import image_metrics, normalize_pair
from tilesr.seams import seam_ratio, tile_edges

BPAE = REPO / "tests" / "assets" / "bpae_actin_crop.tif"
W2S = REPO.parent / "shared" / "data" / "w2s"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="exported .onnx model")
    p.add_argument("--overlaps", default="8,16,24,32", help="tile overlaps (HR px)")
    p.add_argument("--contexts", default="0,32,64,128", help="block contexts (HR px)")
    p.add_argument("--w2s", default="39_0,39_2,40_1", help="W2S FIELD_CHANNEL crops ('' none)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--samples", type=int, help="samples per pixel (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--at", type=int, default=8192, help="output size for the work column")
    p.add_argument("--quick", action="store_true", help="one W2S crop of 128 LR px, 2 steps")
    p.add_argument(
        "--out",
        type=markdown_report,
        default=REPO / "docs" / "benchmarks.md",
        help="markdown report; only its bench_overlap region is rewritten",
    )
    p.add_argument(
        "--render", type=Path, default=None, help="only rewrite the table from a results JSON"
    )
    args = p.parse_args(argv)
    args.overlaps = [int(v) for v in args.overlaps.split(",")]
    args.contexts = [int(v) for v in args.contexts.split(",")]
    args.w2s = [v for v in args.w2s.split(",") if v]
    if args.quick:
        args.w2s = args.w2s[:1]
    return args


def images(args: argparse.Namespace, scale: int) -> list[dict[str, Any]]:
    """The crops: LR input, ground truth (None for BPAE) and a name."""
    crop = 128 if args.quick else 256  # LR pixels
    out = []
    if not args.quick:
        lr = tifffile.imread(BPAE).astype(np.float32)[:crop, :crop]
        out.append({"name": "BPAE actin (tests/assets)", "lr": lr, "gt": None})
    for item in args.w2s:
        field, channel = (int(v) for v in item.split("_"))
        (pair,) = load_w2s(W2S, fields=[field], channels=[channel])
        lr = bin_mean(pair.lr.astype(np.float32), scale).astype(np.float32)[:crop, :crop]
        gt = pair.hr[: crop * scale, : crop * scale]
        out.append({"name": f"W2S {field:03d}_{channel}", "lr": lr, "gt": gt})
    return out


def untiled(model: EngineModel, lr: np.ndarray, intensity: IntensityRange, args) -> np.ndarray:
    """Whole-image sampling of the same conditioning and noise (raw units)."""
    meta = model.metadata
    from tilesr.diffusion import build_schedule, make_sampler

    sampler = make_sampler(meta.sampler, build_schedule(meta.schedule), prediction=meta.prediction)
    cond = conditioning(lr, meta.scale, intensity)
    res = sample(
        model.denoiser, cond, sampler, n_samples=args.samples, steps=args.steps, seed=args.seed
    )
    return intensity.denormalize(res.mean)


def tiled(
    model: EngineModel, lr: np.ndarray, intensity: IntensityRange, overlap: int, context: int, args
) -> Any:
    """The engine's (lazy) restoration with this overlap and context; blocks of two strides."""
    stride = model.metadata.tile_size - overlap
    options = RestoreOptions(
        samples=args.samples,
        steps=args.steps,
        seed=args.seed,
        overlap=overlap,
        context=context,
        block_size=2 * stride,
        uncertainty=False,
    )
    return restore(da.from_array(lr), model, options, intensity_range=intensity)


def psnr_gt(pred: np.ndarray, gt: np.ndarray) -> float:
    pair = normalize_pair(pred, gt, mode="match")
    return image_metrics(pair.pred, pair.gt, data_range=pair.data_range).psnr


def psnr_between(a: np.ndarray, b: np.ndarray, span: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(span**2 / mse)


def seams(img: np.ndarray, tile: int, overlap: int, block: int) -> dict[str, float]:
    h, w = img.shape
    blocks = (list(range(block, h, block)), list(range(block, w, block)))
    return {
        "tile_edges": seam_ratio(img, tile_edges(h, tile, overlap), tile_edges(w, tile, overlap)),
        "block_edges": seam_ratio(img, *blocks),
    }


def work_per_pixel(model: EngineModel, overlap: int, context: int, size: int) -> float:
    """Evaluated tile-pixels per output pixel at ``size``^2 with the default blocks."""
    meta = model.metadata
    lr = da.zeros((size // meta.scale,) * 2, dtype=np.float32, chunks=2048)
    options = RestoreOptions(overlap=overlap, context=context)
    res = restore(lr, model, options, intensity_range=IntensityRange(0.0, 1.0))
    return res.tiles * meta.tile_size**2 / size**2


def plan_key(res: Any) -> tuple[Any, ...]:
    """The tiles of every block: two settings with equal keys do exactly the same work."""
    return tuple(sorted(res.block_tiles.items()))


def measure_image(model: EngineModel, item: dict[str, Any], args) -> dict[str, Any]:
    """Untiled reference and every (overlap, context) of one crop."""
    meta = model.metadata
    lr, gt = item["lr"], item["gt"]
    intensity = global_intensity_range(da.from_array(lr), meta.norm_low, meta.norm_high)
    t0 = time.perf_counter()
    ref = untiled(model, lr, intensity, args)
    out: dict[str, Any] = {"name": item["name"], "untiled_s": time.perf_counter() - t0, "rows": []}
    out["untiled_psnr"] = psnr_gt(ref, gt) if gt is not None else None
    default = (meta.overlap, meta.tile_size)  # today's engine: the model's overlap, one tile
    settings = [(o, c) for o in args.overlaps for c in args.contexts]
    done: dict[tuple[Any, ...], tuple[int, np.ndarray]] = {}
    outputs = {}
    for overlap, context in [*settings, *([default] if default not in settings else [])]:
        t0 = time.perf_counter()
        res = tiled(model, lr, intensity, overlap, context, args)
        key = (overlap, plan_key(res))
        same_as = done[key][0] if key in done else None
        if key not in done:  # the same tiles in every block: the same computation
            done[key] = (context, np.asarray(res.image.compute()))
        img = outputs[(overlap, context)] = done[key][1]
        block = 2 * (meta.tile_size - overlap)
        row = {
            "overlap": overlap,
            "context": context,
            "block": block,
            "tiles": res.tiles,
            "same_tiles_as_context": same_as,
            "seconds": time.perf_counter() - t0,
            "psnr_vs_untiled": psnr_between(img, ref, intensity.span),
            "dpsnr_gt": None if gt is None else psnr_gt(img, gt) - out["untiled_psnr"],
            "seams": seams(img, meta.tile_size, overlap, block),
            "untiled_seams": seams(ref, meta.tile_size, overlap, block),
        }
        out["rows"].append(row)
        print(item["name"], {k: v for k, v in row.items() if k != "untiled_seams"}, flush=True)
    for row in out["rows"]:  # against today's default on the same crop
        img, base = outputs[(row["overlap"], row["context"])], outputs[default]
        row["psnr_vs_default"] = psnr_between(img, base, intensity.span)
        row["dpsnr_gt_vs_default"] = None if gt is None else psnr_gt(img, gt) - psnr_gt(base, gt)
    return out


GOAL_DPSNR, GOAL_SEAM = -0.05, 1.02


def _stat(values: list[float | None], how: Any) -> float | None:
    kept = [v for v in values if v is not None]
    return float(how(kept)) if kept else None


def summary(results: list[dict[str, Any]], work: dict[tuple[int, int], float]) -> list[dict]:
    """One row per (overlap, context) over the crops: means, and the worst PSNR change."""
    rows = []
    for (overlap, context), per_pixel in work.items():
        found = [
            r
            for res in results
            for r in res["rows"]
            if (r["overlap"], r["context"]) == (overlap, context)
        ]
        row = {
            "overlap": overlap,
            "context": context,
            "work": per_pixel,
            "same_tiles_as_context": found[0]["same_tiles_as_context"],
            "psnr_vs_untiled_worst": _stat([r["psnr_vs_untiled"] for r in found], min),
            "psnr_vs_default_worst": _stat([r["psnr_vs_default"] for r in found], min),
        }
        for key in ("dpsnr_gt", "dpsnr_gt_vs_default"):
            row[f"{key}_mean"] = _stat([r[key] for r in found], np.mean)
            row[f"{key}_worst"] = _stat([r[key] for r in found], min)
        for key in ("seams", "untiled_seams"):
            for edge in ("tile_edges", "block_edges"):
                row[f"{key}_{edge}"] = _stat([r[key][edge] for r in found], np.mean)
        worst = [row["dpsnr_gt_worst"], row["dpsnr_gt_vs_default_worst"]]
        row["meets_goal"] = bool(
            all(v is None or v >= GOAL_DPSNR for v in worst)
            and row["seams_tile_edges"] <= GOAL_SEAM
            and row["seams_block_edges"] <= GOAL_SEAM
        )
        rows.append(row)
    return rows


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _header(info: dict[str, Any]) -> list[str]:
    names = ", ".join(info["images"])
    return [
        "## Overlap and block context of fused sampling",
        "",
        f"Command: `{info['command']}`  ",
        f"{info['date']}; model `{info['model']}`; {info['machine']['cpu']}, "
        f"{info['machine']['available_cores']} cores (shared, load average at the start "
        f"{info['load']:.1f}); {info['sampler']} {info['steps']} steps, strength "
        f"{info['strength']}, {info['samples']} sample(s), seed {info['seed']}; tile "
        f"{info['tile']}; crops of {info['crop']} LR px: {names}. Each setting is restored "
        "with blocks of two tile strides (block edges on tile starts, as with the default "
        "blocks) and compared with whole-image sampling of the same conditioning and keyed "
        f"noise, and with today's default (overlap {info['default'][0]}, context "
        f"{info['default'][1]}) on the same crops.",
        "",
        "Columns: work = evaluated tile-pixels per output pixel per sample and step at "
        f"{info['at']}^2 with the default blocks (planned, nothing run); dPSNR = PSNR(this, "
        "GT) - PSNR(reference, GT) on the W2S crops, mean / worst crop, against the untiled "
        "result and against today's default; PSNR of this result against the untiled one "
        "and against the default (worst crop, data range = the intensity range mapped to "
        "[-1, 1]); seam ratios at tile and block edges (mean over the crops), in brackets "
        "the untiled image's own ratio at the same positions (what 'no seam' reads there). "
        f"Goal (issue 10): dPSNR >= {GOAL_DPSNR} dB (against both references), seams <= "
        f"{GOAL_SEAM}.",
        "",
    ]


def markdown(info: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        *_header(info),
        "| overlap | context | work | dPSNR vs untiled | dPSNR vs default | PSNR vs untiled "
        "| PSNR vs default | tile seams | block seams | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        same = r["same_tiles_as_context"]
        context = f"{r['context']}" + (f" (= {same}: same tiles)" if same is not None else "")
        lines.append(
            f"| {r['overlap']} | {context} | {_f(r['work'], 2)} | "
            f"{_f(r['dpsnr_gt_mean'])} / {_f(r['dpsnr_gt_worst'])} | "
            f"{_f(r['dpsnr_gt_vs_default_mean'])} / {_f(r['dpsnr_gt_vs_default_worst'])} | "
            f"{_f(r['psnr_vs_untiled_worst'], 1)} | {_f(r['psnr_vs_default_worst'], 1)} | "
            f"{_f(r['seams_tile_edges'])} ({_f(r['untiled_seams_tile_edges'])}) | "
            f"{_f(r['seams_block_edges'])} ({_f(r['untiled_seams_block_edges'])}) | "
            f"{'met' if r['meets_goal'] else 'not met'} |"
        )
    met = [r for r in rows if r["meets_goal"]]
    best = min(met, key=lambda r: r["work"]) if met else None
    lines += [
        "",
        "Cheapest setting meeting the goal: "
        + (
            f"overlap {best['overlap']}, context {best['context']} ({_f(best['work'], 2)} "
            "tile-pixels per output pixel)."
            if best
            else "none of these."
        ),
        "Block edges lie on tile starts, so a context adds tiles in steps: a row beyond "
        "the far side of each block edge for any context > 0, one on the near side only for "
        "more than the stride minus the overlap. Rows marked 'same tiles' plan exactly the "
        "tiles of the context named in every block, so they were not re-run (the same "
        "computation, the same result).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:  # the markdown of a run already made, from its JSON
        data = json.loads(args.render.read_text())
        info = {k: v for k, v in data.items() if k not in ("summary", "images")}
        info["images"] = [r["name"] for r in data["images"]]
        replace_region(args.out, markdown(info, data["summary"]), region="bench_overlap")
        return 0
    import os

    load = os.getloadavg()[0]
    model = open_model(args.model)
    meta = model.metadata
    args.steps = args.steps or (2 if args.quick else meta.steps)
    args.samples = args.samples or meta.samples
    crops = images(args, meta.scale)
    work = {
        (o, c): work_per_pixel(model, o, c, args.at) for o in args.overlaps for c in args.contexts
    }
    with dask.config.set(scheduler="threads"):
        results = [measure_image(model, item, args) for item in crops]
    rows = summary(results, work)
    command = "python tools/bench_overlap.py " + " ".join(sys.argv[1:] if argv is None else argv)
    info = {
        "date": now_iso(),
        "command": command.strip(),
        "machine": machine_info(),
        "load": load,
        "model": str(args.model.resolve().relative_to(REPO))
        if args.model.resolve().is_relative_to(REPO)
        else str(args.model),
        "sampler": meta.sampler,
        "strength": meta.strength,
        "steps": args.steps,
        "samples": args.samples,
        "seed": args.seed,
        "tile": meta.tile_size,
        "crop": int(crops[0]["lr"].shape[0]),
        "at": args.at,
        "images": [c["name"] for c in crops],
        "default": [meta.overlap, meta.tile_size],
    }
    folder = args.out.parent / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "overlap.json").write_text(
        json.dumps({**info, "summary": rows, "images": results}, indent=1) + "\n"
    )
    replace_region(args.out, markdown(info, rows), region="bench_overlap")
    print(markdown(info, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
