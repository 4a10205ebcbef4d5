"""Does averaging restorations of rotated and flipped inputs help, and at what cost?

    python tools/probe_orientations.py            # validation data, bundled models

A probe on the training run's validation data (W2S 37-38, simulated validation seeds):
each input is restored in several of its 8 dihedral orientations (rotations by 90
degrees, with and without a flip), each result turned back, and the results averaged
(test-time augmentation). The training data were augmented with the same group and the
optics are isotropic, so every orientation is an equally valid view of the input; what
the probe asks is whether the errors of the network in different orientations average
out better than more diffusion samples do. The diffusion model runs DDIM 4 x 2
antithetic per orientation (2 orientations: the default's 16 evaluations), beside the
default itself (4 x 4 antithetic, one orientation); the regression model one evaluation
per orientation. Each with data consistency off and at 3 input pixels.
Writes docs/benchmarks/orientations-validation.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from bench_care import MODELS, ROOT, Setting, restore_one, score, validation_sets

#: (model, setting, dihedral elements k + 4 f: rotate by k x 90 degrees, then flip if f)
CONFIGS = (
    ("diffusion", "ddim:4x4a", (0,)),
    ("diffusion", "ddim:4x2a", (0, 5)),
    ("diffusion", "ddim:4x2a", (0, 5, 2, 7)),
    ("diffusion", "ddim:4x2a", tuple(range(8))),
    ("regression", "1", (0,)),
    ("regression", "1", (0, 5)),
    ("regression", "1", tuple(range(8))),
)


def orient(image: np.ndarray, g: int) -> np.ndarray:
    turned = np.rot90(image, g % 4)
    return np.ascontiguousarray(turned[:, ::-1] if g // 4 else turned)


def unorient(image: np.ndarray, g: int) -> np.ndarray:
    flipped = image[:, ::-1] if g // 4 else image
    return np.rot90(flipped, -(g % 4))


def averaged(lr: np.ndarray, model: Path, setting: Setting, group: tuple[int, ...]) -> np.ndarray:
    total = sum(unorient(restore_one(orient(lr, g), model, setting, 2)[0], g) for g in group)
    return total / len(group)


def main() -> None:
    models = {"diffusion": MODELS / "default.onnx", "regression": MODELS / "regression.onnx"}
    sets = validation_sets(2, quick=False)  # loaded and simulated once for every row
    results = {}
    for kind, text, group in CONFIGS:
        for sigma in (0, 3):
            setting = Setting.parse(f"{text}+c{sigma}")
            for name, pairs in sets.items():
                rows = [score(averaged(p.lr, models[kind], setting, group), p.hr) for p in pairs]
                key = f"{kind} {text} x {len(group)} orientations, consistency {sigma} | {name}"
                results[key] = {m: float(np.mean([r[m] for r in rows])) for m in ("psnr", "ssim")}
                print(key, f"{results[key]['psnr']:.2f} / {results[key]['ssim']:.3f}", flush=True)
    out = ROOT / "docs" / "benchmarks" / "orientations-validation.json"
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
