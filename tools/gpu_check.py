"""GPU throughput check of tilesr (run by tools/gpu_check.sh on a machine with a GPU).

    python tools/gpu_check.py [--model M.onnx] [--out docs/benchmarks/gpu.json]

Measures, with ONNX Runtime's CUDA provider: a 2048x2048 simulated output restored at
the model's default settings and at batch 32/64/128 (tiles/s, peak GPU memory from
nvidia-smi, the fraction of wall time inside the network), the largest difference
between CUDA and CPU outputs on a 512x512 crop, and 200 training steps of
configs/default.yaml's network on CUDA with bf16 autocast (steps/s; only if a CUDA
build of torch is already installed). Without a GPU it says so, writes that, and exits 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (32, 64, 128)


def gpu_name() -> str | None:
    """The GPU nvidia-smi reports, or None when there is no NVIDIA GPU and driver."""
    if shutil.which("nvidia-smi") is None:
        return None
    run = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return run.stdout.strip().splitlines()[0] if run.returncode == 0 and run.stdout else None


class MemoryPeak:
    """Peak GPU memory in use (MiB, nvidia-smi polled every 0.2 s) while the block runs."""

    def __enter__(self) -> MemoryPeak:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if out:
                self.peak = max(self.peak, int(out.splitlines()[0]))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TimedDenoiser:
    """Counts the seconds spent inside network calls."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.metadata, self.seconds = inner, inner.metadata, 0.0
        self.provider = inner.provider

    def predict(self, noisy: Any, cond: Any, t: Any) -> Any:
        start = time.perf_counter()
        out = self.inner.predict(noisy, cond, t)
        self.seconds += time.perf_counter() - start
        return out


def restore_row(lr: np.ndarray, model: Path, batch: int | None, device: str) -> dict[str, Any]:
    import dask

    import tilesr
    from tilesr.denoisers.onnx_backend import OnnxDenoiser

    den = TimedDenoiser(OnnxDenoiser(model, device=device))
    start = time.perf_counter()
    with MemoryPeak() as memory:
        result = tilesr.restore(lr, den, batch_size=batch)
        with dask.config.set(scheduler="threads", num_workers=2):
            image = result.image.compute()
    wall = time.perf_counter() - start
    tiles = result.settings["tiles"]
    evaluations = tiles * result.settings["samples"] * result.settings["steps"]
    return {
        "batch": result.settings.get("batch_size", batch),
        "provider": den.provider,
        "tiles": tiles,
        "tile_evaluations_per_s": evaluations / wall,
        "wall_s": wall,
        "network_fraction": den.seconds / wall,
        "gpu_memory_peak_mib": memory.peak,
        "_image": image,
    }


def training_row(steps: int = 200) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"skipped": "torch has no CUDA device"}
    import yaml

    from tilesr.training.config import config_from_dict
    from tilesr.training.trainer import train

    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    # the speed of a step does not depend on the images: simulated pairs only
    raw["data"]["sources"] = [{"kind": "simulated", "n": 64, "size": 256, "val_n": 0}]
    raw["validation"]["n_images"] = 0
    raw["output_dir"] = str(Path("/tmp/tilesr-gpu-check-train"))
    shutil.rmtree(raw["output_dir"], ignore_errors=True)
    config = config_from_dict(raw).with_overrides(steps=steps)
    start = time.perf_counter()
    result = train(config, progress=False)
    return {"steps": result.step, "steps_per_s": result.step / (time.perf_counter() - start)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "gpu.json")
    args = parser.parse_args()
    import onnxruntime as ort

    from tilesr import bundled_model

    model = args.model or bundled_model()
    gpu = gpu_name()
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "gpu": gpu}
    if gpu is None or "CUDAExecutionProvider" not in ort.get_available_providers():
        why = "no NVIDIA GPU (nvidia-smi not found)" if gpu is None else "no CUDA provider"
        report["message"] = f"{why} on this machine: nothing measured"
        print(report["message"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        return 0
    from tilesr.simulate import simulate_pairs

    lr = simulate_pairs(1, size=2048, scale=2, noise_level=5, seed=1)[0].lr
    rows = [restore_row(lr, model, b, "cuda") for b in (None, *BATCHES)]
    crop = lr[:256, :256]
    cuda, cpu = (restore_row(crop, model, 8, d)["_image"] for d in ("cuda", "cpu"))
    report["restore_2048"] = [{k: v for k, v in r.items() if k != "_image"} for r in rows]
    report["cuda_vs_cpu_max_abs_diff"] = float(np.max(np.abs(cuda - cpu)))
    report["training"] = training_row()
    print(json.dumps(report, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
