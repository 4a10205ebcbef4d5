"""Does a larger tile restore better? Bundled models, validation data only.

    python tools/bench_tile_size.py [--tiles 128/32,256/64,512/0]

Restores the training run's validation sets (W2S fields 37-38, the simulated validation
seeds; `bench_care.validation_sets`) with each TILE/OVERLAP through the engine at the
models' default sampling, scored as `tilesr evaluate` scores. 512/0 on these 512x512
fields is one tile: whole-image sampling. Writes docs/benchmarks/tile-size.json.
A diagnostic for the tile-size choice (docs/model-card.md); not a test set.
"""

from __future__ import annotations

import argparse
import json
import time

import dask
import numpy as np
from _bench_common import now_iso
from bench_care import MODELS, ROOT, score, validation_sets

import tilesr


def restore(lr: np.ndarray, model: str, tile: int, overlap: int) -> np.ndarray:
    options = tilesr.RestoreOptions(tile_size=tile, overlap=overlap, threads=2)
    result = tilesr.restore(lr.astype(np.float32), model, options)
    with dask.config.set(scheduler="synchronous"):
        return np.asarray(result.image.compute())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="128/32,256/64,512/0")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "tile-size.json"))
    args = parser.parse_args()
    geometries = [tuple(int(v) for v in g.split("/")) for g in args.tiles.split(",")]
    sets = validation_sets(2, quick=False)
    rows = []
    for model in ("default", "regression"):
        for tile, overlap in geometries:
            for name, pairs in sets.items():
                start = time.perf_counter()
                path = str(MODELS / f"{model}.onnx")
                scores = [score(restore(p.lr, path, tile, overlap), p.hr) for p in pairs]
                mean = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
                rows.append({"model": model, "tile": tile, "overlap": overlap, "set": name, **mean})
                print(
                    f"{model:10s} {tile}/{overlap:<3d} {name:16s} PSNR {mean['psnr']:.3f} "
                    f"SSIM {mean['ssim']:.4f} ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    with open(args.out, "w") as f:
        json.dump(
            {"date": now_iso(), "command": "python tools/bench_tile_size.py", "rows": rows},
            f,
            indent=1,
        )


if __name__ == "__main__":
    main()
