"""Engine and speed benchmarks: writes docs/benchmarks/engine.json and a docs/benchmarks.md region.

Sections (``--only`` picks some; results of the others are kept from the JSON file):

efficiency  network evaluations of one ``restore_file`` run (counted by wrapping the
            denoiser), the same evaluations at the same batch sizes in a tight loop on
            the same ONNX Runtime session, efficiency = tight loop / end to end; and the
            tile-pixel overhead (grid overlap x block context).
memory      peak RSS of ``tilesr restore`` (a subprocess) for a small and a large output,
            same cheap settings; MONAI's in-memory sliding window as a reference when
            installed.
peer        the same restoration (tilesr's sampling: conditioning, strength, sampler,
            steps, keyed noise) with ``monai.inferers.sliding_window_inference`` as the
            tiling (one whole-image sliding window per step), the U-Net in torch eager and
            in ONNX Runtime.
speed       tiles per second of ONNX Runtime and PyTorch eager at batch 1/8/32, as a
            fraction of the measured fp32 GEMM rate (FLOPs per tile counted on the graph).
demo        time and peak RSS of ``tilesr restore`` with the demo settings.
plan        planning only (``tilesr.restore`` is lazy): time and client memory of the
            graph of square outputs of 10^4, 10^5 and 10^6 pixels; with ``--baseline``
            the same for another source tree (before/after in one run).

Every measurement runs in its own process (``tools/_bench_worker.py`` or the
``tilesr`` CLI) and its peak RSS is that process's own (``os.wait4``). The machine is
recorded with the results; quote ratios from one run, not absolute numbers across runs.

Usage::

    python tools/bench_engine.py [--quick] [--model PATH | --random-model] \
        [--out docs/benchmarks.md] [--only efficiency,memory,peer,speed,demo]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import (
    BUNDLED_MODEL,
    REPO,
    BenchModel,
    cheap_model,
    flops_per_tile_onnx,
    machine_info,
    markdown_report,
    now_iso,
    random_unet,
    replace_region,
    run_child,
    simulated_input,
    worker_cmd,
)

SECTIONS = ("efficiency", "memory", "peer", "speed", "demo", "plan")
SCHEMA = 2
#: results files of schema 1 named the sections by letter
_SCHEMA1_KEYS = dict(zip("abcde", SECTIONS[:5], strict=True))


@dataclass(frozen=True)
class Sizes:
    """Output sizes (HR pixels, square) and repetition counts of one mode."""

    efficiency: int  # efficiency and peer
    rss: tuple[int, ...]  # memory: small, large (the ratio), and more
    demo: int  # demo; the 8192 row is opt-in
    batches: tuple[int, ...]  # speed
    min_seconds: float  # speed, per batch size
    min_calls: int
    plans: tuple[int, ...] = (10**4, 10**5, 10**6)  # plan
    speed_rounds: int = 12  # speed: GEMM + network rounds per process


FULL = Sizes(
    efficiency=2048,
    rss=(2048, 8192, 16384),
    demo=2048,
    batches=(1, 8, 32),
    min_seconds=10.0,
    min_calls=3,
)
QUICK = Sizes(
    efficiency=512,
    rss=(512, 2048),
    demo=256,
    batches=(1, 8),
    min_seconds=2.0,
    min_calls=2,
    plans=(10**4, 10**5),
    speed_rounds=3,
)
DEMO_LARGE = 8192
#: processes per code in the speed section, alternating with the other code's
SPEED_TURNS = 3
#: LR chunk edge of the lazy inputs the plan section plans for
PLAN_CHUNK = 1024
#: goal of issue 10 for the peak RSS ratio of the two smaller memory outputs
RSS_GOAL = 1.15
#: goals of issue 10 for the 10^6 x 10^6 plan
PLAN_GOAL_S, PLAN_GOAL_MIB = 30.0, 1024.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _general_arguments(p)
    _section_arguments(p)
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad or not only:
        p.error(f"--only takes sections from {','.join(SECTIONS)}, got {args.only!r}")
    args.only = only
    for name in ("samples", "steps", "rss_steps", "demo_samples", "demo_steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.json is None:
        args.json = args.out.parent / "benchmarks" / "engine.json"
    return args


def _general_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (finishes in a few minutes); for validating the script",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help="exported .onnx model to benchmark")
    src.add_argument(
        "--random-model",
        action="store_true",
        help="randomly initialised UNetConfig() U-Net (default when no bundled model)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="torch checkpoint of --model (for the PyTorch and MONAI-torch rows)",
    )
    p.add_argument(
        "--out",
        type=markdown_report,
        default=REPO / "docs" / "benchmarks.md",
        help="markdown report; only its bench_engine region is rewritten",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results file (default: <out folder>/benchmarks/engine.json)",
    )
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help="sections to run, e.g. efficiency,speed (default all)",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a source tree of tilesr to measure as 'before' (e.g. git archive main | tar -x)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep models, inputs and outputs here (reused between runs)",
    )


def _section_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=int, default=1, help="(efficiency, peer) samples per pixel")
    p.add_argument("--steps", type=int, default=2, help="(efficiency, peer) sampler steps")
    p.add_argument("--sampler", default="dpmpp", help="(efficiency, peer, demo) sampler")
    p.add_argument(
        "--rss-model",
        choices=("analytic", "unet"),
        default="analytic",
        help="(memory) network for the memory rows (default: analytic, cheap)",
    )
    p.add_argument("--rss-steps", type=int, default=1, help="(memory) sampler steps")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="(peer, speed) threads per network call (default: the engine's per worker)",
    )
    p.add_argument("--demo-samples", type=int, help="(demo) samples (default: the model's)")
    p.add_argument("--demo-steps", type=int, help="(demo) steps (default: the model's)")
    p.add_argument("--demo-sampler", help="(demo) sampler (default: the model's)")
    p.add_argument(
        "--include-8192-demo",
        action="store_true",
        help="(demo) also restore an 8192x8192 output with the demo settings (slow)",
    )


def have_monai() -> bool:
    return importlib.util.find_spec("monai") is not None


def have_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


class Bench:
    """Runs the requested sections and collects their results."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.work = workdir
        self.sizes = QUICK if args.quick else FULL
        self.model = self._model()
        from tilesr.denoisers.onnx_backend import OnnxDenoiser
        from tilesr.engine.scheduling import worker_threads

        self.meta = OnnxDenoiser(self.model.onnx, threads=1).metadata
        self.threads = args.threads or worker_threads()
        self.engine_run: dict[str, Any] | None = None

    def _engine_output(self, size: int) -> Path:
        """Where the efficiency section's restoration goes (the peer section compares with it)."""
        return self.work / f"out_efficiency_{size}.ome.zarr"

    def _model(self) -> BenchModel:
        a = self.args
        if a.model is not None:
            if not a.model.is_file():
                raise SystemExit(f"--model {a.model} does not exist")
            return BenchModel(a.model.resolve(), a.checkpoint, f"given model {a.model.name}")
        if not a.random_model and BUNDLED_MODEL.is_file():
            return BenchModel(BUNDLED_MODEL, a.checkpoint, "bundled tilesr/bundled/default.onnx")
        print("exporting a random default-config U-Net ...", flush=True)
        return random_unet(self.work)

    def _input(self, hr_size: int) -> Path:
        print(f"  preparing a simulated {hr_size}x{hr_size} (output) input ...", flush=True)
        return simulated_input(self.work, hr_size, self.meta.scale)

    def _restore_cli(
        self,
        model: Path,
        hr_size: int,
        samples: int,
        steps: int,
        tag: str,
        code: Path | None = None,
        sampler: str | None = None,
    ) -> dict[str, Any]:
        """``tilesr restore`` in a subprocess (``code``: another source tree's tilesr)."""
        inp = self._input(hr_size)
        out = self.work / f"out_{tag}_{hr_size}.ome.zarr"
        cmd = [
            sys.executable,
            "-m",
            "tilesr",
            "restore",
            str(inp),
            str(out),
            "--model",
            str(model),
            "--samples",
            str(samples),
            "--steps",
            str(steps),
            "--sampler",
            sampler or self.args.sampler,
            "--overwrite",
            "--no-progress",
        ]
        print(
            f"  running {shlex.join(cmd[2:4])} ... ({hr_size}^2, {samples} sample(s), "
            f"{steps} step(s))",
            flush=True,
        )
        run = run_child(cmd, code=code)
        if run.returncode:
            raise RuntimeError(f"tilesr restore failed ({run.returncode}): {run.stderr[-2000:]}")
        shutil.rmtree(out, ignore_errors=True)  # large outputs: keep the disk free
        return {
            "output": hr_size,
            "samples": samples,
            "steps": steps,
            "wall_s": run.wall_s,
            "peak_rss_mib": run.peak_rss_mib,
            "stdout": run.stdout.strip()[-300:],
        }

    def _monai(
        self,
        backend: str,
        model: BenchModel,
        hr_size: int,
        samples: int,
        steps: int,
        reference: Path | None = None,
    ) -> dict[str, Any]:
        args = {
            "backend": backend,
            "model": str(model.onnx),
            "checkpoint": str(model.checkpoint) if model.checkpoint else None,
            "input": str(self._input(hr_size)),
            "samples": samples,
            "steps": steps,
            "sampler": self.args.sampler,
            "seed": 0,
            "batch_size": 8,
            "threads": self.threads,
            "reference": str(reference) if reference is not None else None,
        }
        print(f"  MONAI sliding window ({backend}, {hr_size}^2) ...", flush=True)
        run = run_child(worker_cmd("monai", args))
        return {
            **run.result(),
            "peak_rss_mib": run.peak_rss_mib,
            "process_wall_s": run.wall_s,
            "output": hr_size,
            "samples": samples,
            "steps": steps,
        }

    # ------------------------------------------------------------------ sections

    def sections(self) -> dict[str, Callable[[], dict[str, Any]]]:
        """The measurement of each section, by its name."""
        return {
            "efficiency": self.efficiency,
            "memory": self.memory,
            "peer": self.peer,
            "speed": self.speed,
            "demo": self.demo,
            "plan": self.plan,
        }

    def efficiency(self) -> dict[str, Any]:
        size = self.sizes.efficiency
        inp = self._input(size)
        args = {
            "model": str(self.model.onnx),
            "input": str(inp),
            "output": str(self._engine_output(size)),
            "samples": self.args.samples,
            "steps": self.args.steps,
            "sampler": self.args.sampler,
            "tight": True,
        }
        print(f"  engine run + tight loop ({size}^2) ...", flush=True)
        run = run_child(worker_cmd("engine", args))
        res = {**run.result(), "peak_rss_mib": run.peak_rss_mib}
        tile_px = res["evals"] * res["tile"] ** 2
        out_px = res["output_shape"][-1] * res["output_shape"][-2]
        per = max(1, self.args.samples * self.args.steps)
        res.update(
            efficiency=res["tight_s"] / res["wall_s"],
            network_fraction=res["network_s"] / res["wall_s"],
            tile_pixels_per_output_pixel=tile_px / (out_px * per),
            grid_overlap_factor=res["grid_tiles"] * res["tile"] ** 2 / out_px,
            context_factor=res["engine_tiles"] / res["grid_tiles"],
        )
        self.engine_run = res
        return {
            "settings": {
                "output": size,
                "samples": self.args.samples,
                "steps": self.args.steps,
                "sampler": self.args.sampler,
            },
            "results": res,
        }

    def _codes(self) -> list[tuple[str, Path | None]]:
        """The source trees to measure: the baseline first (when given), then this one."""
        codes: list[tuple[str, Path | None]] = [("this tree", None)]
        if self.args.baseline is not None:
            codes.insert(0, ("baseline", self.args.baseline.resolve()))
        return codes

    def _model_for(self, model: Path, code: Path | None) -> Path:
        """``model`` as a source tree reads it: a baseline from before a metadata key
        (``context``) gets a copy without it, and restores as it did (one tile)."""
        if code is None:
            return model
        copy = self.work / f"{model.stem}-for-baseline.onnx"
        if copy.exists() and copy.stat().st_mtime >= model.stat().st_mtime:
            return copy  # written for an earlier row of this run
        import onnx

        proto = onnx.load(str(model))
        for prop in proto.metadata_props:
            if prop.key == "tilesr":
                values = json.loads(prop.value)
                values.pop("context", None)
                prop.value = json.dumps(values, sort_keys=True)
        onnx.save(proto, str(copy))
        return copy

    def memory(self) -> dict[str, Any]:
        model = (
            self.model if self.args.rss_model == "unet" else cheap_model(self.work, self.model.onnx)
        )
        rows = []
        for n in self.sizes.rss:
            for label, code in self._codes():
                onnx_file = self._model_for(model.onnx, code)
                row = self._restore_cli(onnx_file, n, 1, self.args.rss_steps, "memory", code)
                rows.append({**row, "code": label})
        peers = []
        if have_monai():  # the whole image in memory: the two smaller outputs only
            peers = [
                self._monai("onnx", model, n, 1, self.args.rss_steps) for n in self.sizes.rss[:2]
            ]
        small, large = self.sizes.rss[:2]

        def ratio(label: str) -> float:
            rss = {r["output"]: r["peak_rss_mib"] for r in rows if r["code"] == label}
            return rss[large] / rss[small]

        return {
            "settings": {
                "outputs": list(self.sizes.rss),
                "samples": 1,
                "steps": self.args.rss_steps,
                "sampler": self.args.sampler,
                "model": model.description,
            },
            "results": {
                "tilesr": rows,
                "monai_onnx": peers,
                "rss_ratio": ratio("this tree"),
                "rss_ratio_baseline": ratio("baseline") if self.args.baseline else None,
                "monai_installed": have_monai(),
            },
        }

    def peer(self) -> dict[str, Any]:
        size = self.sizes.efficiency
        settings = {
            "output": size,
            "samples": self.args.samples,
            "steps": self.args.steps,
            "sampler": self.args.sampler,
            "tile": self.meta.tile_size,
            "overlap": self.meta.overlap,
            "blend": "gaussian (MONAI), sin^2 (tilesr)",
            "threads": self.threads,
        }
        if self.engine_run is None or self.engine_run["output_shape"][-1] != size:
            self.efficiency()
        assert self.engine_run is not None
        e = self.engine_run
        tilesr_row = {
            "name": "tilesr restore_file (ONNX Runtime, OME-Zarr in/out)",
            "wall_s": e["wall_s"],
            "peak_rss_mib": e["peak_rss_mib"],
            "evals": e["evals"],
            "per_step": e["evals"] // max(1, self.args.samples * self.args.steps),
        }
        if not have_monai():
            return {
                "settings": settings,
                "results": {
                    "tilesr": tilesr_row,
                    "monai": None,
                    "note": "monai is not installed (pip install 'tilesr[bench]')",
                },
            }
        rows = []
        same = (self.model, size, self.args.samples, self.args.steps, self._engine_output(size))
        if self.model.checkpoint is not None and have_torch():
            rows.append(self._monai("torch", *same))
        rows.append(self._monai("onnx", *same))
        note = None if self.model.checkpoint else "no checkpoint for this model: no torch row"
        return {
            "settings": settings,
            "results": {"tilesr": tilesr_row, "monai": rows, "note": note},
        }

    def speed(self) -> dict[str, Any]:
        tile = self.meta.tile_size
        common = {
            "model": str(self.model.onnx),
            "tile": tile,
            "threads": self.threads,
            "batches": list(self.sizes.batches),
            "min_seconds": self.sizes.min_seconds,
            "min_calls": self.sizes.min_calls,
            "checkpoint": str(self.model.checkpoint) if self.model.checkpoint else None,
        }
        print("  FLOPs per tile and GEMM rate ...", flush=True)
        flops = run_child(worker_cmd("flops", {**common})).result()
        gemm = run_child(
            worker_cmd("gemm", {"n": 2048, "threads": self.threads, "repeats": 10})
        ).result()
        paired = self._speed_paired(common)
        backends = []
        if self.model.checkpoint is not None and have_torch():
            backends.append("torch")
        gpu = gpu_status()
        if gpu["torch_cuda"] and self.model.checkpoint is not None:
            backends += ["torch-cuda-fp32", "torch-cuda-bf16"]
        if gpu["ort_cuda"]:
            backends.append("onnx-cuda")
        speed = []
        for backend in backends:
            print(f"  tiles/s: {backend} ...", flush=True)
            speed.append(run_child(worker_cmd("speed", {**common, "backend": backend})).result())
        return {
            "settings": {
                "tile": tile,
                "threads": self.threads,
                "batches": list(self.sizes.batches),
                "turns": SPEED_TURNS,
                "rounds": self.sizes.speed_rounds,
            },
            "results": {
                "flops": flops,
                "gemm": gemm,
                "paired": paired,
                "speed": speed,
                "gpu": gpu,
                "default_batch": cpu_batch(),
            },
        }

    def _speed_paired(self, common: dict[str, Any]) -> list[dict[str, Any]]:
        """ONNX Runtime CPU rows: each code in turn, several times, GEMM and network paired."""
        args = {
            **common,
            "gemm_n": 2048,
            "rounds": self.sizes.speed_rounds,
            "tiles_per_turn": 32,
        }
        out = []
        for turn in range(SPEED_TURNS):
            for label, code in self._codes():
                print(f"  tiles/s and GEMM in turns ({label}, turn {turn + 1}) ...", flush=True)
                mine = {**args, "model": str(self._model_for(Path(args["model"]), code))}
                run = run_child(worker_cmd("speed_paired", mine), code=code)
                out.append({**run.result(), "code": label, "turn": turn})
        return out

    def plan(self) -> dict[str, Any]:
        """Planning time and client memory (its own process) per output size and code."""
        codes = self._codes()
        rows = []
        for size in self.sizes.plans:
            for label, code in codes:
                print(f"  plan {size}^2 ({label}) ...", flush=True)
                model = self._model_for(self.model.onnx, code)
                args = {"model": str(model), "size": size, "chunk": PLAN_CHUNK}
                run = run_child(worker_cmd("plan", args), code=code)
                rows.append({**run.result(), "code": label, "peak_rss_mib": run.peak_rss_mib})
        return {
            "settings": {
                "sizes": list(self.sizes.plans),
                "input_chunk": PLAN_CHUNK,
                "baseline": str(self.args.baseline) if self.args.baseline else None,
            },
            "results": {"rows": rows},
        }

    def demo(self) -> dict[str, Any]:
        a, meta = self.args, self.meta
        samples = a.demo_samples or meta.samples  # the model's defaults, as `tilesr demo`
        steps = a.demo_steps or meta.steps
        sampler = a.demo_sampler or meta.sampler
        gemm = {"n": 2048, "threads": self.threads, "repeats": 10}
        before = run_child(worker_cmd("gemm", gemm)).result()
        rows = [
            self._restore_cli(
                self.model.onnx, self.sizes.demo, samples, steps, "demo", sampler=sampler
            )
        ]
        after = run_child(worker_cmd("gemm", gemm)).result()
        limit = arithmetic_limit(self.model.onnx, self.sizes.demo, samples * steps, [before, after])
        rows[0]["tiles"] = engine_tiles(self.model.onnx, self.sizes.demo, self.meta.scale)
        large_tiles = engine_tiles(self.model.onnx, DEMO_LARGE, self.meta.scale)
        if a.include_8192_demo:
            big = self._restore_cli(
                self.model.onnx, DEMO_LARGE, samples, steps, "demo", sampler=sampler
            )
            rows.append({**big, "tiles": large_tiles})
        else:
            est = rows[0]["wall_s"] * large_tiles / rows[0]["tiles"]
            rows.append(
                {
                    "output": DEMO_LARGE,
                    "samples": samples,
                    "steps": steps,
                    "tiles": large_tiles,
                    "skipped": True,
                    "estimated_s": est,
                }
            )
        return {
            "settings": {
                "samples": samples,
                "steps": steps,
                "sampler": sampler,
                "model": self.model.description,
            },
            "results": {"rows": rows, "limit": limit},
        }


def arithmetic_limit(
    model: Path, hr_size: int, evals_per_pixel: int, gemms: list[dict[str, Any]]
) -> dict[str, Any]:
    """Seconds the network's FLOPs for every output pixel once per evaluation would take
    at the fp32 GEMM rate (torch's, same threads; measured before and after the run)."""
    rates = [g.get("torch_best_gflops") or g["numpy_best_gflops"] for g in gemms]
    flops_per_pixel = flops_per_tile_onnx(model, 128) / 128**2
    flops = hr_size**2 * evals_per_pixel * flops_per_pixel
    rate = sum(rates) / len(rates)
    return {"flops": flops, "gemm_gflops": rates, "seconds": flops / (rate * 1e9)}


def engine_tiles(model: Path, hr_size: int, scale: int) -> int:
    """Tiles the engine plans for a square output (lazy; nothing is computed)."""
    import dask.array as da
    import numpy as np

    from tilesr.data.normalize import IntensityRange
    from tilesr.engine.restore import restore

    lr = da.zeros((hr_size // scale, hr_size // scale), dtype=np.float32, chunks=1024)
    return restore(lr, str(model), intensity_range=IntensityRange(0.0, 1.0)).tiles


def cpu_batch() -> int:
    """The engine's default batch on the CPU (this tree's)."""
    from tilesr.engine.model import CPU_BATCH

    return CPU_BATCH


def gpu_status() -> dict[str, Any]:
    """Whether PyTorch CUDA and ONNX Runtime's CUDA provider are usable here."""
    import onnxruntime as ort

    torch_cuda = False
    if have_torch():
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    return {
        "torch_cuda": torch_cuda,
        "ort_cuda": "CUDAExecutionProvider" in ort.get_available_providers(),
    }


# ---------------------------------------------------------------------- markdown


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _context(r: dict[str, Any]) -> Any:
    return r.get("context", r.get("halo"))  # results measured before the rename say "halo"


def _context_factor(r: dict[str, Any]) -> Any:
    return r.get("context_factor", r.get("halo_factor"))


def _provenance(sec: dict[str, Any]) -> str:
    m = sec["machine"]
    v = m["versions"]
    mode = " **(--quick: small sizes, for validation only)**" if sec.get("quick") else ""
    return (
        f"_Measured {sec['date']} on {m['cpu']} ({m['available_cores']} cores, "
        f"{m['memory_gib']} GiB), ONNX Runtime {v.get('onnxruntime')}, torch "
        f"{v.get('torch')}; model: {sec['model']['description']}; command: "
        f"`{sec['command']}`_{mode}"
    )


def md_efficiency(sec: dict[str, Any]) -> list[str]:
    r, s = sec["results"], sec["settings"]
    per = s["samples"] * s["steps"]
    hist = ", ".join(f"{v} x {k}" for k, v in r["batch_histogram"].items())
    return [
        "### Engine efficiency",
        "",
        f"Output {s['output']}x{s['output']} (simulated input, scale 2), {s['samples']} "
        f"sample(s), {s['steps']} {s['sampler']} step(s), tile {r['tile']} / overlap "
        f"{r['overlap']}, blocks of {r['block']} px with {_context(r)} px of context, "
        f"{r['workers']} dask worker(s) x {r['threads']} ONNX Runtime thread(s). End to end "
        "is `restore_file` from OME-Zarr to OME-Zarr (percentiles, reads, sampling, "
        "blending, writes, pyramid) with a warm session; the tight loop runs "
        "`session.run` on the same session with the same batch sizes.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| network evaluations (tiles x samples x steps) | {r['evals']} "
        f"({r['evals'] // max(1, per)} x {s['samples']} x {s['steps']}) |",
        f"| network calls (count x batch) | {r['calls']} ({hist}) |",
        f"| end-to-end wall time | {_f(r['wall_s'], 1)} s |",
        f"| time inside `predict` during it | {_f(r['network_s'], 1)} s |",
        f"| tight loop, same evaluations (mean of one run before and one after) | "
        f"{_f(r['tight_s'], 1)} s ({_f(r['tight_before_s'], 1)} / "
        f"{_f(r['tight_after_s'], 1)}) |",
        f"| **efficiency** = tight loop / end to end (goal >= 0.95) | **{_f(r['efficiency'])}** |",
        f"| network share of the end-to-end time (measured in the same run, so robust to "
        f"load changes) | {_f(r['network_fraction'])} |",
        f"| tiles per step: engine (with the blocks' context) / bare global grid | "
        f"{r['engine_tiles']} / {r['grid_tiles']} = {_f(_context_factor(r))} |",
        f"| **evaluated tile-pixels / output pixels** (per sample and step) | "
        f"**{_f(r['tile_pixels_per_output_pixel'])}** = grid overlap "
        f"{_f(r['grid_overlap_factor'])} x block context {_f(_context_factor(r))} |",
        f"| peak RSS of the process (engine run, then tight loop) | {r['peak_rss_mib']:.0f} MiB |",
    ] + (
        []
        if r.get("tight_batches_match", True)
        else [
            "",
            "Warning: the tight loop before the run assumed other batch sizes than the "
            "engine made; the 'before' time is not comparable.",
        ]
    )


def md_memory(sec: dict[str, Any]) -> list[str]:
    r, s = sec["results"], sec["settings"]
    lines = [
        "### Peak memory vs output size",
        "",
        f"`tilesr restore` (OME-Zarr in and out, default blocks and scheduler) in a "
        f"subprocess; peak RSS is the process's own (`os.wait4`). {s['samples']} sample, "
        f"{s['steps']} {s['sampler']} step(s), model: **{s['model']}** (memory is the "
        "point here, not the network). Wall time includes start-up and imports. 'baseline' "
        "rows are the same command run with another source tree's tilesr (`--baseline`), "
        "interleaved with this tree's.",
        "",
        "| implementation | output | wall time | peak RSS |",
        "|---|---|---|---|",
    ]
    for row in r["tilesr"]:
        label = "tilesr restore" + (f" ({row['code']})" if "code" in row else "")
        lines.append(
            f"| {label} | {row['output']}^2 | {_f(row['wall_s'], 1)} s | "
            f"{row['peak_rss_mib']:.0f} MiB |"
        )
    for row in r.get("monai_onnx") or []:
        lines.append(
            f"| MONAI sliding window, whole image in memory (reference) | "
            f"{row['output']}^2 | {_f(row['wall_s'], 1)} s | "
            f"{row['peak_rss_mib']:.0f} MiB |"
        )
    small, large = s["outputs"][:2]
    goal = RSS_GOAL
    status = "met" if r["rss_ratio"] <= goal else "not met"
    lines += [
        "",
        f"**Peak RSS ratio tilesr {large}^2 / {small}^2: {_f(r['rss_ratio'])}** (goal <= "
        f"{goal}: {status})"
        + (f"; baseline {_f(r['rss_ratio_baseline'])}." if r.get("rss_ratio_baseline") else "."),
    ]
    if not r.get("monai_installed"):
        lines.append("MONAI rows skipped: monai is not installed.")
    return lines


def md_peer(sec: dict[str, Any]) -> list[str]:
    r, s = sec["results"], sec["settings"]
    lines = [
        "### Peer reference: MONAI sliding-window inference",
        "",
        f"The same restoration ({s['output']}^2 output, {s['samples']} sample(s), "
        f"{s['steps']} {s['sampler']} step(s), tile {s['tile']}, overlap {s['overlap']}, "
        f"batch 8, {s['threads']} thread(s)): tilesr's own whole-image sampling "
        "(`tilesr.diffusion.sampling.sample`: the same conditioning with its clip to "
        "[-1, 1], the model's strength and start timestep, sampler, steps and keyed noise) "
        "with `monai.inferers.sliding_window_inference` (gaussian blending) as the tiling, "
        "once per step on the whole image held in memory; only the tiling and blending "
        "differ. MONAI times cover reading the input to the restored array in memory (no "
        "output file), after model load. The last column is the mean absolute difference "
        "from tilesr's output, as a fraction of the intensity range.",
        "",
        "| implementation | network evaluations per step | wall time | peak RSS | time vs tilesr "
        "| mean abs. difference |",
        "|---|---|---|---|---|---|",
    ]
    t = r["tilesr"]
    lines.append(
        f"| {t['name']} | {t['per_step']} | {_f(t['wall_s'], 1)} s | "
        f"{t['peak_rss_mib']:.0f} MiB | 1.00 | 0 |"
    )
    for row in r.get("monai") or []:
        name = {"torch": "MONAI + PyTorch eager", "onnx": "MONAI + ONNX Runtime"}[row["backend"]]
        diff = row.get("mean_abs_diff_vs_tilesr")
        lines.append(
            f"| {name} | {row['windows_per_step']} | {_f(row['wall_s'], 1)} s | "
            f"{row['peak_rss_mib']:.0f} MiB | {_f(row['wall_s'] / t['wall_s'])} "
            f"| {'not measured' if diff is None else f'{diff:.1e}'} |"
        )
    if r.get("note"):
        lines += ["", f"Note: {r['note']}."]
    return lines


def speed_summary(sec: dict[str, Any]) -> list[dict[str, Any]]:
    """Per code and batch: best and median tiles/s, and the fraction of the GEMM rate as
    best over best and as the median of each round's paired ratio."""
    import numpy as np

    r = sec["results"]
    per_tile = r["flops"]["onnx_flops"]
    rows = []
    for code in dict.fromkeys(x["code"] for x in r.get("paired", [])):
        runs = [x for x in r["paired"] if x["code"] == code]
        gemm = [g for x in runs for g in x["gemm_gflops"]]
        for batch in runs[0]["tiles_per_s"]:
            rates = [v for x in runs for v in x["tiles_per_s"][batch]]
            ratios = [
                v * per_tile / 1e9 / g
                for x in runs
                for v, g in zip(x["tiles_per_s"][batch], x["gemm_gflops"], strict=True)
            ]
            rows.append(
                {
                    "code": code,
                    "batch": int(batch),
                    "best": max(rates),
                    "median": float(np.median(rates)),
                    "gemm_best": max(gemm),
                    "gemm_median": float(np.median(gemm)),
                    "fraction_best": max(rates) * per_tile / 1e9 / max(gemm),
                    "fraction_paired": float(np.median(ratios)),
                }
            )
    return rows


def md_speed(sec: dict[str, Any]) -> list[str]:
    r, s = sec["results"], sec["settings"]
    if "paired" not in r:  # a file from before the paired measurement
        return ["### Network speed", "", "Older results format: rerun `--only speed`."]
    flops, gemm = r["flops"], r["gemm"]
    per_tile = flops["onnx_flops"]
    torch_check = (
        f"; PyTorch `FlopCounterMode` gives {flops['torch_flops'] / 1e9:.3f}"
        if "torch_flops" in flops
        else ""
    )
    summary = speed_summary(sec)
    lines = [
        "### Network speed",
        "",
        f"128x128 tiles, {s['threads']} ONNX Runtime thread(s), ONNX Runtime CPU through "
        "`OnnxDenoiser.predict` of each source tree. FLOPs per tile (2 x MACs of "
        f"Conv/MatMul/Gemm on the ONNX graph): **{per_tile / 1e9:.3f} GFLOP**{torch_check}. "
        "The fp32 GEMM rate is measured in the same processes, in turns with the network: "
        f"each of {s['turns']} processes per code (the codes alternating) runs {s['rounds']} "
        "rounds of one 2048^2 matmul (torch, same threads) then 32 tiles at each batch "
        "size. 'best' is the fastest round (closest to an idle machine; the fraction is "
        "best over the best GEMM), 'paired' the median over rounds of the network's rate "
        "over that round's GEMM rate (robust to the load changing between rounds).",
        "",
        "| code | batch | tiles/s best | tiles/s median | fraction of GEMM (best / best) | "
        "fraction of GEMM (paired median) |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary:
        lines.append(
            f"| {row['code']} | {row['batch']} | {_f(row['best'], 1)} | {_f(row['median'], 1)} "
            f"| {_f(row['fraction_best'])} | {_f(row['fraction_paired'])} |"
        )
    if summary:
        gemm_rows = {x["code"]: x for x in summary}
        lines += [
            "",
            "GEMM (2048^2, same processes): "
            + "; ".join(
                f"{c}: best {x['gemm_best']:.1f}, median {x['gemm_median']:.1f} GFLOP/s"
                for c, x in gemm_rows.items()
            )
            + f". Separate best-of-10 GEMM: torch {_f(gemm.get('torch_best_gflops'), 1)}, "
            f"numpy {_f(gemm['numpy_best_gflops'], 1)} GFLOP/s.",
        ]
        lines += _speed_goals(summary, int(r.get("default_batch", 8)))
    lines += _other_backends(r, per_tile, gemm)
    return lines


def _speed_goals(summary: list[dict[str, Any]], batch: int) -> list[str]:
    mine = {x["batch"]: x for x in summary if x["code"] == "this tree"}
    if batch not in mine or 32 not in mine:
        return []
    d, big = mine[batch], mine[32]
    ok = [d[k] >= 0.8 for k in ("fraction_best", "fraction_paired")]
    flat = [big[k] >= 0.97 * d[k] for k in ("fraction_best", "fraction_paired")]
    if all(ok):
        verdict = "met"
    elif any(ok):
        verdict = "met on " + ("best" if ok[0] else "paired")
    else:
        verdict = "not met"
    return [
        "",
        f"**Default CPU batch {batch}: {_f(d['fraction_best'])} (best) / "
        f"{_f(d['fraction_paired'])} (paired) of the GEMM rate** (goal >= 0.80: {verdict}); "
        f"batch 32: {_f(big['fraction_best'])} / {_f(big['fraction_paired'])} (goal: no worse "
        f"than batch {batch}, within 3 %: {'met' if all(flat) else 'not met'}).",
    ]


def _other_backends(r: dict[str, Any], per_tile: float, gemm: dict[str, Any]) -> list[str]:
    """Rows of the PyTorch and CUDA backends (measured alone, median call time)."""
    names = {
        "onnx": "ONNX Runtime CPU",
        "torch": "PyTorch eager CPU",
        "torch-cuda-fp32": "PyTorch CUDA fp32",
        "torch-cuda-bf16": "PyTorch CUDA bf16",
        "onnx-cuda": "ONNX Runtime CUDA",
    }
    peak = gemm.get("torch_best_gflops") or gemm["numpy_best_gflops"]
    lines = [
        "",
        "Other backends (each alone, median call time after a warm-up call):",
        "",
        "| backend | batch | tiles/s | ms/tile | GFLOP/s | fraction of GEMM rate |",
        "|---|---|---|---|---|---|",
    ]
    for b in r["speed"]:
        for row in b["rows"]:
            rate = row["tiles_per_s"] * per_tile / 1e9
            frac = _f(rate / peak) if "cuda" not in b["backend"] else "n/a"
            lines.append(
                f"| {names[b['backend']]} | {row['batch']} | {_f(row['tiles_per_s'])} | "
                f"{1000 / row['tiles_per_s']:.0f} | {rate:.1f} | {frac} |"
            )
    gpu = r["gpu"]
    if not (gpu["torch_cuda"] or gpu["ort_cuda"]):
        lines.append("| PyTorch CUDA fp32 / bf16, ONNX Runtime CUDA | - | no GPU | | | |")
    if not r["speed"]:
        lines.append("| PyTorch eager CPU | - | no checkpoint given (`--checkpoint`) | | | |")
    return lines


def md_demo(sec: dict[str, Any]) -> list[str]:
    r, s = sec["results"], sec["settings"]
    lines = [
        "### Demo settings",
        "",
        f"`tilesr restore` with {s['samples']} samples, {s['steps']} {s['sampler']} steps "
        f"(model: {s['model']}), default tiles, blocks and scheduler, in a subprocess.",
        "",
        "| output | tiles (with context) | wall time | peak RSS | tiles x samples x steps / s |",
        "|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        if row.get("skipped"):
            lines.append(
                f"| {row['output']}^2 | {row['tiles']} | not run (est. "
                f"{row['estimated_s'] / 60:.0f} min from the "
                f"{r['rows'][0]['output']}^2 rate; `--include-8192-demo`) | | |"
            )
            continue
        rate = row["tiles"] * row["samples"] * row["steps"] / row["wall_s"]
        lines.append(
            f"| {row['output']}^2 | {row['tiles']} | {row['wall_s'] / 60:.1f} min "
            f"| {row['peak_rss_mib']:.0f} MiB | {_f(rate)} |"
        )
    limit = r.get("limit")
    if limit:
        first = r["rows"][0]
        ratio = first["wall_s"] / limit["seconds"]
        gemm = ", ".join(f"{g:.0f}" for g in limit["gemm_gflops"])
        lines += [
            "",
            f"Arithmetic limit at {first['output']}^2: the network's FLOPs for every output "
            f"pixel once per evaluation ({limit['flops'] / 1e12:.2f} TFLOP, no tile overlap "
            f"or context) at the fp32 GEMM rate measured before and after the run ({gemm} "
            f"GFLOP/s): {limit['seconds']:.0f} s. **Demo settings / arithmetic limit: "
            f"{ratio:.2f}x** (goal <= 1.5x: {'met' if ratio <= 1.5 else 'not met'}).",
        ]
    return lines


def md_plan(sec: dict[str, Any]) -> list[str]:
    r, s = sec["results"], sec["settings"]
    lines = [
        "### Planning a large output (graph only)",
        "",
        "`tilesr.restore` on a lazy zero input (float32, LR chunks of "
        f"{s['input_chunk']}^2) with the intensity range given, so nothing is computed: "
        "the time to make the plan and build the graph, and the client's memory (peak RSS "
        "of its own process, and the growth of its RSS while planning). Default blocks; the "
        "model is opened and probed before the clock starts.",
        "",
        "| output | code | blocks | tiles | planning time | peak RSS | RSS growth |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        out = f"{row['size']:.0e}".replace("+0", "").replace("1e", "10^") + " square"
        if row.get("refused"):
            lines.append(f"| {out} | {row['code']} | refused: {row['refused'][:90]}... | | | | |")
            continue
        grow = row["rss_after_mib"] - row["rss_before_mib"]
        lines.append(
            f"| {out} | {row['code']} | {row['blocks']} | {row['tiles']:.3g} | "
            f"{_f(row['seconds'], 2)} s | {row['peak_rss_mib']:.0f} MiB | {grow:.0f} MiB |"
        )
    big = [x for x in r["rows"] if x["size"] == 10**6 and x["code"] == "this tree"]
    if big and not big[0].get("refused"):
        ok = big[0]["seconds"] < PLAN_GOAL_S and big[0]["peak_rss_mib"] < PLAN_GOAL_MIB
        lines += [
            "",
            f"**10^6 x 10^6: {_f(big[0]['seconds'], 1)} s, {big[0]['peak_rss_mib']:.0f} MiB "
            f"peak** (goal < {PLAN_GOAL_S:.0f} s and < 1 GB: {'met' if ok else 'not met'}).",
        ]
    return lines


RENDER: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "efficiency": md_efficiency,
    "memory": md_memory,
    "peer": md_peer,
    "speed": md_speed,
    "demo": md_demo,
    "plan": md_plan,
}


def render(data: dict[str, Any]) -> str:
    lines = [
        "## Engine and speed benchmarks",
        "",
        "Generated by `python tools/bench_engine.py` (see `tools/README.md`); raw numbers in "
        "`docs/benchmarks/engine.json`. The machine may be shared and noisy: compare ratios "
        "within one section, not absolute times across runs or machines.",
    ]
    for key in SECTIONS:
        sec = data["sections"].get(key)
        if sec is None:
            continue
        lines += ["", *RENDER[key](sec), "", _provenance(sec)]
    return "\n".join(lines) + "\n"


def load_results(path: Path) -> dict[str, Any]:
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("schema") == 1:  # sections named a-e
            sections = {_SCHEMA1_KEYS[k]: v for k, v in data["sections"].items()}
            data = {"schema": SCHEMA, "sections": sections}
        if data.get("schema") == SCHEMA:
            return dict(data)
    return {"schema": SCHEMA, "sections": {}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(
        ["python", "tools/bench_engine.py", *(sys.argv[1:] if argv is None else argv)]
    )
    temp = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="tilesr-bench-")) if temp else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        bench = Bench(args, work)
        machine = machine_info()
        data = load_results(args.json)
        measure = bench.sections()
        for key in args.only:
            print(f"[{key}] ...", flush=True)
            sec = measure[key]()
            data["sections"][key] = {
                "date": now_iso(),
                "command": command,
                "quick": args.quick,
                "machine": machine,
                "model": bench.model.to_dict(),
                **sec,
            }
            # written after every section: a crash later keeps what was measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            replace_region(args.out, render(data))
            print("\n".join(RENDER[key](data["sections"][key])), flush=True)
    finally:
        if temp:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.json} and {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
