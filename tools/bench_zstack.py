"""Axial flicker of restored z-stacks: independent vs shared noise across planes.

    python tools/bench_zstack.py [--model M.onnx] [--neuron PATH] [--quick]

Stacks are restored plane by plane; with noise keyed by the plane index, neighbouring
planes get independent samples and the output flickers through z. Two stacks:

* ``W2S pseudo-stack``: 4 planes that are one W2S validation field (37, channel 0, the
  noisy frame binned 2x2) plus independent Gaussian noise of 1 % of its range: the true
  signal does not change with z, so every axial change of the output is flicker; per
  plane PSNR against the 400-frame average.
* ``flowdec neuron``: the real widefield z-stack ``flowdec/datasets/neuron-25pct/data.tif``
  (50x256x256, in the flowdec 1.1.0 wheel; `tilesr data fetch flowdec-neuron`), first
  16 planes; no ground truth.

Axial variation: mean |out[z+1] - out[z]| over all pixels, in units of the stack's
intensity range (the engine's percentile range). The reference is the input's
*smoothed signal*: the bicubic upsampling of each plane after a Gaussian blur of 1 LR
pixel, which removes most of the per-frame noise but keeps the structure's real change
with z. Goal: output within 1.5x of that reference, with no loss of per-plane PSNR.
Writes docs/benchmarks/zstack.json and the ``bench_zstack`` region of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from _bench_common import markdown_report, now_iso, replace_region
from bench_care import SHARED, _dataset_file, score
from scipy import ndimage

import tilesr
from tilesr.data.datasets import load_w2s
from tilesr.data.resize import bin_mean, upsample_bicubic
from tilesr.denoisers.onnx_backend import OnnxDenoiser

ROOT = Path(__file__).resolve().parent.parent


def pseudo_stack() -> tuple[np.ndarray, np.ndarray]:
    pair = load_w2s(SHARED / "w2s", fields=(37,), channels=(0,))[0]
    lr = bin_mean(pair.lr, 2)
    rng = np.random.default_rng(0)
    noise = 0.01 * float(np.ptp(lr))
    stack = np.stack([lr + rng.normal(0, noise, lr.shape) for _ in range(4)])
    return stack.astype(np.float32), pair.hr


def axial(volume: np.ndarray, span: float) -> float:
    return float(np.mean(np.abs(np.diff(volume, axis=0)))) / span


def reference(stack: np.ndarray, scale: int) -> np.ndarray:
    return np.stack([upsample_bicubic(ndimage.gaussian_filter(p, 1.0), scale) for p in stack])


def run(stack: np.ndarray, model: Path | None, gt: np.ndarray | None, settings) -> dict:
    out: dict = {}
    for label, kwargs in settings:
        start = time.perf_counter()
        options = tilesr.RestoreOptions(axes="zyx", **kwargs)
        result = tilesr.restore(stack, None if model is None else str(model), options)
        restored = result.image.compute()
        span = result.intensity_range.span
        row = {"axial": axial(restored, span), "seconds": time.perf_counter() - start}
        if gt is not None:
            row["psnr"] = float(np.mean([score(p, gt)["psnr"] for p in restored]))
        out[label] = row
        print(f"  {label:40s} axial {row['axial']:.4f}", flush=True)
    scale = result.metadata.scale
    out["input (smoothed signal, bicubic)"] = {"axial": axial(reference(stack, scale), span)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument(
        "--neuron",
        type=Path,
        default=_dataset_file("data:flowdec_neuron/data.tif"),
        help="flowdec neuron data.tif (default: the fetched dataset flowdec_neuron)",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--out",
        type=markdown_report,
        default=ROOT / "docs" / "benchmarks.md",
        help="markdown report; only its bench_zstack region is rewritten",
    )
    args = parser.parse_args()
    settings = [
        (f"model default, {noise} noise across planes", {"plane_noise": noise})
        for noise in ("independent", "shared")
    ]
    # averaging instead: twice the model's samples, noise independent across planes
    model = args.model or tilesr.bundled_model("default")
    samples = 2 * OnnxDenoiser(model).metadata.samples
    settings.append(
        (
            f"{samples} samples, independent noise across planes",
            {"samples": samples, "plane_noise": "independent"},
        )
    )
    stacks = {"W2S pseudo-stack": pseudo_stack()}
    if args.neuron is not None and args.neuron.exists():
        neuron = tifffile.imread(args.neuron).astype(np.float32)[: 4 if args.quick else 16]
        stacks["flowdec neuron"] = (neuron, None)
    results = {name: run(s, args.model, gt, settings) for name, (s, gt) in stacks.items()}
    command = "python tools/bench_zstack.py " + " ".join(sys.argv[1:])
    path = args.out.parent / "benchmarks" / "zstack.json"
    path.write_text(json.dumps({"date": now_iso(), "command": command, **results}, indent=1))
    lines = ["## Axial flicker of z-stacks", "", f"Command: `{command.strip()}`", ""]
    for name, rows in results.items():
        lines += [f"### {name}", "", "| restoration | axial variation | PSNR |", "|---|---|---|"]
        ref = rows["input (smoothed signal, bicubic)"]["axial"]
        lines[-2:] = [
            "| restoration | axial variation | / input's smoothed signal | PSNR |",
            "|---|---|---|---|",
        ]
        for label, r in rows.items():
            psnr = f"{r['psnr']:.2f}" if "psnr" in r else "-"
            lines.append(f"| {label} | {r['axial']:.4f} | {r['axial'] / ref:.2f} | {psnr} |")
        lines.append("")
    lines.append(
        "Goal (quality issue): axial variation within 1.5x of the input's smoothed signal, "
        "with no loss of per-plane PSNR."
    )
    if not args.quick:
        replace_region(args.out, "\n".join(lines), region="bench_zstack")


if __name__ == "__main__":
    main()
