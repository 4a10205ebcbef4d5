"""Measurements that run in their own process for ``tools/bench_engine.py``.

``python tools/_bench_worker.py TASK '{"json": "args"}'`` prints one line starting
with ``BENCH_RESULT`` holding a JSON object. Each task runs in a fresh process so that
thread pools (ONNX Runtime spins its threads after a run) and allocator state of one
measurement do not leak into the next, and so the parent can read the process's own
peak RSS.

Tasks: ``engine`` (network evaluations and wall time of ``restore_file``, then the same
evaluations in a tight loop), ``monai`` (the reverse diffusion loop around
``monai.inferers.sliding_window_inference``), ``speed`` (tiles per second per backend
and batch size), ``gemm`` (fp32 matmul rate), ``flops`` (FLOPs per tile).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import emit, flops_per_tile_onnx

# --------------------------------------------------------------------------- engine (a)


class CountingDenoiser:
    """Wraps a Denoiser: counts every call's batch size and the time spent inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.metadata = inner.metadata
        self.batches: list[int] = []
        self.seconds = 0.0
        self._lock = threading.Lock()

    def predict(
        self, noisy: NDArray[np.float32], cond: NDArray[np.float32], t: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        start = time.perf_counter()
        eps = self.inner.predict(noisy, cond, t)
        spent = time.perf_counter() - start
        with self._lock:
            self.batches.append(int(noisy.shape[0]))
            self.seconds += spent
        return eps

    def __dask_tokenize__(self) -> Any:
        return ("CountingDenoiser", str(self.inner.path), self.inner.threads)


def tight_loop(session: Any, meta: Any, batches: list[int], tile: int, workers: int) -> float:
    """Wall time of ``session.run`` over exactly ``batches`` (split over ``workers`` threads)."""
    rng = np.random.default_rng(0)
    feeds = {}
    for b in set(batches):
        x = rng.standard_normal((b, 1, tile, tile), dtype=np.float32)
        feeds[b] = {
            meta.input_noisy: x,
            meta.input_cond: x.copy(),
            meta.input_timestep: np.full((b,), 500.0, np.float32),
        }
    shares = [batches[w::workers] for w in range(workers)]

    def run(share: list[int]) -> None:
        for b in share:
            session.run([meta.output], feeds[b])

    threads = [threading.Thread(target=run, args=(s,)) for s in shares]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - start


def planned_tiles(meta: Any, lr_shape: tuple[int, int], model: Any) -> dict[str, Any]:
    """Tiles the engine plans per block (with its context) and tiles of the bare global grid."""
    import dask.array as da

    from tilesr.data.normalize import IntensityRange
    from tilesr.engine.restore import plan_block, restore
    from tilesr.engine.tiling import block_spans, tile_grid

    lazy = restore(
        da.zeros(lr_shape, dtype=np.float32, chunks=1024),
        model,
        intensity_range=IntensityRange(0.0, 1.0),
    )
    block, context = lazy.plan.block_size, lazy.plan.context
    hr = (lr_shape[0] * meta.scale, lr_shape[1] * meta.scale)
    per_block = [
        len(
            plan_block(
                0, (by, bx), hr, lr_shape, meta.scale, meta.tile_size, meta.overlap, context
            ).tiles
        )
        for by in block_spans(hr[0], block)
        for bx in block_spans(hr[1], block)
    ]
    assert sum(per_block) == lazy.tiles, (per_block, lazy.tiles)
    grid = tile_grid(hr, meta.tile_size, meta.overlap)
    return {
        "engine_tiles": sum(per_block),
        "block_tiles": per_block,
        "grid_tiles": len(grid),
        "blocks": len(per_block),
        "block": block,
        "context": context,
    }


def expected_batches(block_tiles: list[int], samples: int, steps: int, batch: int) -> list[int]:
    """Network batch sizes of the fused sampler: per block and step, tiles x samples in order."""
    out = []
    for tiles in block_tiles:
        entries = tiles * samples
        out += [min(batch, entries - i) for i in range(0, entries, batch)] * steps
    return out


def task_engine(args: dict[str, Any]) -> dict[str, Any]:
    from tilesr.engine.model import open_model
    from tilesr.engine.scheduling import default_workers, worker_threads
    from tilesr.io import open_image
    from tilesr.options import RestoreOptions
    from tilesr.restore_file import restore_file

    threads = worker_threads()
    opened = open_model(args["model"], RestoreOptions(threads=threads))
    inner, meta = opened.denoiser, opened.metadata
    counting = CountingDenoiser(inner)
    # the engine's default for the provider that runs the model, passed on explicitly
    batch = int(args.get("batch_size") or opened.default_batch_size())
    x = np.zeros((batch, 1, meta.tile_size, meta.tile_size), np.float32)
    inner.predict(x, x, np.zeros(batch, np.float32))  # session built and warm

    lr_shape = tuple(int(n) for n in open_image(args["input"]).data.shape[-2:])
    tight = bool(args.get("tight", True))
    workers = default_workers()
    plan = planned_tiles(meta, (lr_shape[0], lr_shape[1]), inner)
    if tight:
        # the batches the engine will make (measured for real below; checked equal), so
        # the tight loop can run before and after it and bracket any drift in machine load
        expected = expected_batches(
            plan["block_tiles"], int(args["samples"]), int(args["steps"]), batch
        )
        before = tight_loop(inner.session, meta, expected, meta.tile_size, workers)
    start = time.perf_counter()
    options = RestoreOptions(
        samples=args["samples"], steps=args["steps"], sampler=args["sampler"], batch_size=batch
    )
    report = restore_file(
        args["input"], args["output"], options, model=counting, overwrite=True, progress=False
    )
    wall = time.perf_counter() - start
    out = {
        "threads": threads,
        "workers": workers,
        "wall_s": wall,
        "output_shape": list(report.output_shape),
        "evals": int(sum(counting.batches)),
        "calls": len(counting.batches),
        "batch_histogram": {str(k): v for k, v in sorted(Counter(counting.batches).items())},
        "network_s": counting.seconds,
        "tile": meta.tile_size,
        "overlap": meta.overlap,
        **plan,
    }
    if tight:
        after = tight_loop(inner.session, meta, counting.batches, meta.tile_size, workers)
        out.update(
            tight_before_s=before,
            tight_after_s=after,
            tight_s=(before + after) / 2,
            tight_batches_match=sorted(expected) == sorted(counting.batches),
        )
    return out


# --------------------------------------------------------------------------- MONAI (c)


def _torch_model(checkpoint: str, threads: int) -> Any:
    import torch

    from tilesr.model.checkpoint import build_model, load_checkpoint

    torch.set_num_threads(threads)
    return build_model(load_checkpoint(checkpoint), ema=True, source=checkpoint)


class MonaiSlidingWindow:
    """A Denoiser whose every call is one ``monai.inferers.sliding_window_inference``.

    The network runs on MONAI's windows of the whole image (gaussian blending); handed
    to :func:`tilesr.diffusion.sampling.sample`, everything else (conditioning, initial
    state at the model's strength, sampler, steps, keyed noise) is tilesr's own code, so
    the two differ only in how the image is cut into tiles and blended.
    """

    def __init__(self, network: Any, metadata: Any, batch: int) -> None:
        self.network, self.metadata, self.batch = network, metadata, batch
        self.windows = 0

    def predict(
        self, noisy: NDArray[np.float32], cond: NDArray[np.float32], t: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        import torch
        from monai.inferers import sliding_window_inference

        # the network's own channel order: [cond, noisy]
        stacked = torch.from_numpy(np.concatenate([cond, noisy], axis=1))
        step = float(t[0])

        def window_output(window: torch.Tensor) -> torch.Tensor:
            self.windows += int(window.shape[0])
            return self.network(window[:, 1:2], window[:, 0:1], step)

        tile = self.metadata.tile_size
        with torch.inference_mode():
            out = sliding_window_inference(
                stacked,
                roi_size=(tile, tile),
                sw_batch_size=self.batch,
                predictor=window_output,
                overlap=self.metadata.overlap / tile,
                mode="gaussian",
            )
        assert isinstance(out, torch.Tensor)
        return np.asarray(out.numpy(), dtype=np.float32)


def _window_network(backend: str, args: dict[str, Any], onnx_model: Any) -> Any:
    """``net(noisy, cond, t)`` on torch tensors: the PyTorch U-Net or the ONNX session."""
    import torch

    if backend == "torch":
        net = _torch_model(args["checkpoint"], int(args["threads"]))
        return lambda noisy, cond, t: net(noisy, cond, torch.full((noisy.shape[0],), t))

    def run(noisy: torch.Tensor, cond: torch.Tensor, t: float) -> torch.Tensor:
        tt = np.full((noisy.shape[0],), t, dtype=np.float32)
        return torch.from_numpy(onnx_model.predict(noisy.numpy(), cond.numpy(), tt))

    return run


def task_monai(args: dict[str, Any]) -> dict[str, Any]:
    import torch

    from tilesr.data.conditioning import conditioning
    from tilesr.denoisers.onnx_backend import OnnxDenoiser
    from tilesr.diffusion import build_schedule, make_sampler
    from tilesr.diffusion.sampling import sample
    from tilesr.engine.restore import global_intensity_range
    from tilesr.io import open_image, open_restored

    threads, n = int(args["threads"]), int(args["samples"])
    torch.set_num_threads(threads)
    onnx_model = OnnxDenoiser(args["model"], threads=threads)
    meta = onnx_model.metadata
    network = _window_network(args["backend"], args, onnx_model)
    peer = MonaiSlidingWindow(network, meta, int(args["batch_size"]))

    start = time.perf_counter()
    image = open_image(args["input"]).data
    intensity = global_intensity_range(image, meta.norm_low, meta.norm_high)
    cond = conditioning(np.asarray(image.compute()), meta.scale, intensity)
    sampler = make_sampler(
        args["sampler"], build_schedule(meta.schedule), prediction=meta.prediction
    )
    result = sample(  # the model's strength and sample noise, as the engine's run uses
        peer,
        cond,
        sampler,
        n_samples=n,
        steps=int(args["steps"]),
        seed=int(args["seed"]),
        antithetic=meta.sample_noise == "antithetic",
    )
    restored = intensity.denormalize(result.mean)
    wall = time.perf_counter() - start
    steps = len(sampler.timesteps(int(args["steps"]), _start(meta)))
    out = {
        "backend": args["backend"],
        "threads": threads,
        "wall_s": wall,
        "evals": peer.windows,
        "windows_per_step": peer.windows // max(1, n * steps),
        "output_shape": list(restored.shape),
        "finite": bool(np.isfinite(restored).all()),
        "strength": meta.strength,
    }
    if args.get("reference"):
        # how far MONAI's tiling and blending move the result from tilesr's, same sampling
        # a tilesr output: its restoration channel (not the uncertainty beside it)
        ref = np.asarray(open_restored(args["reference"]).image, dtype=np.float32)
        out["mean_abs_diff_vs_tilesr"] = float(np.abs(restored - ref).mean() / intensity.span)
    return out


def _start(meta: Any) -> int:
    from tilesr.diffusion.sampling import start_timestep

    return start_timestep(meta.schedule.timesteps, meta.strength)


# --------------------------------------------------------------------------- speed (d)


def _time_calls(call: Any, batch: int, min_seconds: float, min_calls: int) -> dict[str, Any]:
    call()  # warm-up: first-call allocations and kernel selection
    times: list[float] = []
    total = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - total < min_seconds:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {
        "batch": batch,
        "calls": len(times),
        "median_call_s": median,
        "tiles_per_s": batch / median,
    }


def task_speed(args: dict[str, Any]) -> dict[str, Any]:
    backend, tile, threads = args["backend"], int(args["tile"]), int(args["threads"])
    min_seconds, min_calls = float(args["min_seconds"]), int(args["min_calls"])
    rows = []
    if backend.startswith("onnx"):
        from tilesr.denoisers.onnx_backend import OnnxDenoiser

        device = "cuda" if backend == "onnx-cuda" else "cpu"
        den = OnnxDenoiser(args["model"], threads=threads, device=device)
        for b in args["batches"]:
            x = np.random.default_rng(0).standard_normal((b, 1, tile, tile), dtype=np.float32)
            t = np.full((b,), 500.0, np.float32)
            rows.append(
                _time_calls(lambda x=x, t=t: den.predict(x, x, t), b, min_seconds, min_calls)
            )
        return {"backend": backend, "threads": threads, "rows": rows}

    import torch

    net = _torch_model(args["checkpoint"], threads)
    device = "cuda" if "cuda" in backend else "cpu"
    dtype = torch.bfloat16 if backend.endswith("bf16") else torch.float32
    net = net.to(device)
    for b in args["batches"]:
        xt = torch.randn(b, 1, tile, tile, device=device)
        tt = torch.full((b,), 500.0, device=device)

        def call(x: Any = xt, t: Any = tt) -> None:
            with (
                torch.inference_mode(),
                torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32),
            ):
                net(x, x, t)
            if device == "cuda":
                torch.cuda.synchronize()

        rows.append(_time_calls(call, b, min_seconds, min_calls))
    return {"backend": backend, "threads": threads, "rows": rows}


def _gemm_call(n: int, threads: int) -> tuple[Any, str]:
    """One fp32 n x n matmul as a call, with torch (threads set) or else numpy."""
    try:
        import torch
    except ImportError:
        return _numpy_gemm_call(n)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    ta = torch.from_numpy(rng.standard_normal((n, n), dtype=np.float32))
    tb = torch.from_numpy(rng.standard_normal((n, n), dtype=np.float32))
    return (lambda: torch.mm(ta, tb)), "torch"


def task_speed_paired(args: dict[str, Any]) -> dict[str, Any]:
    """ONNX Runtime tiles/s per batch and the GEMM rate, measured in turns.

    Every round times one GEMM and then each batch size (alternating their order), so a
    change in the machine's load hits both sides of each round's ratio alike.
    """
    from tilesr.denoisers.onnx_backend import OnnxDenoiser

    tile, threads, n = int(args["tile"]), int(args["threads"]), int(args["gemm_n"])
    den = OnnxDenoiser(args["model"], threads=threads, device="cpu")
    rng = np.random.default_rng(0)
    calls = {}
    for b in args["batches"]:
        x = rng.standard_normal((b, 1, tile, tile), dtype=np.float32)
        t = np.full((b,), 500.0, np.float32)
        reps = max(1, int(args["tiles_per_turn"]) // b)
        calls[b] = (
            lambda x=x, t=t, reps=reps: [den.predict(x, x, t) for _ in range(reps)],
            b * reps,
        )
    gemm, gemm_lib = _gemm_call(n, threads)
    gemm()
    for call, _ in calls.values():
        call()  # warm-up: allocations and kernel selection
    rows: dict[int, list[float]] = {b: [] for b in calls}
    gemm_rates = []
    for r in range(int(args["rounds"])):
        start = time.perf_counter()
        gemm()
        gemm_rates.append(2.0 * n**3 / (time.perf_counter() - start) / 1e9)
        for b in list(calls)[:: 1 if r % 2 == 0 else -1]:
            call, tiles = calls[b]
            start = time.perf_counter()
            call()
            rows[b].append(tiles / (time.perf_counter() - start))
    return {
        "threads": threads,
        "gemm_lib": gemm_lib,
        "gemm_n": n,
        "gemm_gflops": gemm_rates,
        "tiles_per_s": {str(b): v for b, v in rows.items()},
    }


def task_gemm(args: dict[str, Any]) -> dict[str, Any]:
    """Best and median fp32 GEMM rate of torch (when installed) and of numpy."""
    n, threads, repeats = int(args["n"]), int(args["threads"]), int(args["repeats"])
    out: dict[str, Any] = {"n": n, "threads": threads}
    calls = [_gemm_call(n, threads)]
    if calls[0][1] == "torch":
        calls.append(_numpy_gemm_call(n))
    for call, lib in calls:
        call()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        out[f"{lib}_best_gflops"] = 2.0 * n**3 / min(times) / 1e9
        out[f"{lib}_median_gflops"] = 2.0 * n**3 / float(np.median(times)) / 1e9
    return out


def _numpy_gemm_call(n: int) -> tuple[Any, str]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return (lambda: a @ b), "numpy"


def task_flops(args: dict[str, Any]) -> dict[str, Any]:
    tile = int(args["tile"])
    out: dict[str, Any] = {
        "tile": tile,
        "onnx_flops": flops_per_tile_onnx(Path(args["model"]), tile),
    }
    if args.get("checkpoint"):
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        net = _torch_model(args["checkpoint"], 1)
        x = torch.zeros(1, 1, tile, tile)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            net(x, x, torch.zeros(1))
        out["torch_flops"] = float(counter.get_total_flops())
    return out


# --------------------------------------------------------------------------- plan


def _rss_mib() -> float:
    """This process's resident set size now (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def task_plan(args: dict[str, Any]) -> dict[str, Any]:
    """Plan (nothing computed) a square output of ``size`` pixels: time and client memory."""
    import gc

    import dask.array as da

    from tilesr.data.normalize import IntensityRange
    from tilesr.engine.model import open_model
    from tilesr.engine.restore import restore
    from tilesr.errors import TilesrError
    from tilesr.options import RestoreOptions

    model = open_model(args["model"], RestoreOptions(threads=1))
    size, scale = int(args["size"]), model.metadata.scale
    lr = da.zeros((size // scale, size // scale), dtype=np.float32, chunks=int(args["chunk"]))
    gc.collect()
    before = _rss_mib()
    start = time.perf_counter()
    try:
        res = restore(lr, model, intensity_range=IntensityRange(0.0, 1.0))
    except TilesrError as exc:
        return {"size": size, "refused": str(exc), "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    return {
        "size": size,
        "seconds": seconds,
        "rss_before_mib": before,
        "rss_after_mib": _rss_mib(),
        "blocks": int(np.prod(res.image.numblocks)),
        "tiles": int(res.tiles),
        "block_size": res.plan.block_size,
        "input_chunks": int(np.prod(lr.numblocks)),
    }


TASKS = {
    "engine": task_engine,
    "monai": task_monai,
    "speed": task_speed,
    "gemm": task_gemm,
    "flops": task_flops,
    "plan": task_plan,
    "speed_paired": task_speed_paired,
}

if __name__ == "__main__":
    emit(TASKS[sys.argv[1]](json.loads(sys.argv[2])))
