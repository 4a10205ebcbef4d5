"""Helpers shared by ``tools/bench_engine.py`` and its worker processes.

Machine description, child processes with their own peak RSS (``os.wait4``), the
benchmark models (a randomly initialised default U-Net exported to ONNX, or a cheap
analytic ONNX model with the same tile geometry), simulated OME-Zarr inputs, FLOPs
per tile from an ONNX graph, and the markdown region writer.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = REPO / "tilesr" / "bundled" / "default.onnx"
RESULT_MARKER = "BENCH_RESULT "


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS and library versions (read without importing torch)."""
    from tilesr.engine.scheduling import available_cores, default_workers, worker_threads

    try:
        import psutil

        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        mem_gib = None
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "available_cores": available_cores(),
        "engine_workers": default_workers(),
        "engine_threads_per_worker": worker_threads(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in (
                "tilesr",
                "numpy",
                "onnxruntime",
                "onnxruntime-gpu",
                "torch",
                "dask",
                "zarr",
                "monai",
            )
        },
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------- children


@dataclass(frozen=True)
class ChildRun:
    """One finished child process: exit status, wall time, its own peak RSS and output."""

    returncode: int
    wall_s: float
    peak_rss_mib: float
    stdout: str
    stderr: str

    def result(self) -> dict[str, Any]:
        """The JSON object a worker printed after :data:`RESULT_MARKER` (last one wins)."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith(RESULT_MARKER):
                return dict(json.loads(line[len(RESULT_MARKER) :]))
        tail = "\n".join((self.stderr or self.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"child exited with {self.returncode} and no result:\n{tail}")


# A bare ``python -S`` in between: on Linux a child's ru_maxrss starts from its parent's
# RSS at fork time (exec keeps the high-water mark), so forking from this process (with
# torch and simulated images loaded) would report our memory, not the child's.
_LAUNCHER = """\
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(cmd: list[str], *, cwd: Path = REPO, code: Path | None = None) -> ChildRun:
    """Run ``cmd`` and measure its own peak resident set size.

    A small launcher forks ``cmd`` and reads its rusage with ``os.wait4`` (the maximum
    RSS of exactly that process); the launcher's own few MiB are the floor of the
    measurement. Output goes to temporary files so a chatty child cannot block on a
    full pipe. ``code``: a source tree whose ``tilesr`` the child imports instead of this
    one's (a baseline to compare with, e.g. ``git archive main | tar -x -C /tmp/base``).
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "maxrss"
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if code is not None:  # and run from there: ``python -m`` puts the cwd first
            env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
            cwd = code
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(rss_file), *cmd]
        with out_path.open("w") as out, err_path.open("w") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(launcher, stdout=out, stderr=err, cwd=cwd, env=env)
            returncode = proc.wait()
            wall = time.perf_counter() - start
        # ru_maxrss is in KiB on Linux
        peak = int(rss_file.read_text()) / 1024.0 if rss_file.exists() else float("nan")
        return ChildRun(returncode, wall, peak, out_path.read_text(), err_path.read_text())


def worker_cmd(task: str, args: dict[str, Any]) -> list[str]:
    """Command line of one ``tools/_bench_worker.py`` task."""
    worker = Path(__file__).resolve().parent / "_bench_worker.py"
    return [sys.executable, str(worker), task, json.dumps(args)]


def emit(result: dict[str, Any]) -> None:
    """Print a worker's result as the line the parent looks for."""
    print(RESULT_MARKER + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class BenchModel:
    """The network under test: its ONNX file and, when known, the matching checkpoint."""

    onnx: Path
    checkpoint: Path | None
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def random_unet(folder: Path) -> BenchModel:
    """A randomly initialised default-config U-Net, checkpointed and exported (timings only)."""
    import torch

    from tilesr.export.onnx_export import export_onnx
    from tilesr.metadata import ModelMetadata
    from tilesr.model.checkpoint import Checkpoint, save_checkpoint
    from tilesr.model.unet import UNet, UNetConfig

    config = UNetConfig()
    ckpt_path, onnx_path = folder / "random_unet.pt", folder / "random_unet.onnx"
    if not onnx_path.exists():
        torch.manual_seed(0)
        state = UNet(config).state_dict()
        meta = ModelMetadata(size_multiple=config.size_multiple)
        ckpt = Checkpoint(unet=config.to_dict(), metadata=asdict(meta), model=state, ema=state)
        save_checkpoint(ckpt_path, ckpt)
        export_onnx(ckpt_path, onnx_path, overwrite=True)
    return BenchModel(onnx_path, ckpt_path, "random default-config U-Net (UNetConfig())")


def cheap_model(folder: Path, like: Path) -> BenchModel:
    """The analytic per-pixel ONNX model of the tests, with ``like``'s metadata.

    Same schedule, scale and tile geometry as the real model, almost no compute: for
    memory measurements, where the network is not the point.
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.onnx_models import analytic_model
    from tilesr.denoisers.onnx_backend import OnnxDenoiser

    meta = OnnxDenoiser(like, threads=1).metadata
    path = folder / "analytic.onnx"
    if not path.exists():
        analytic_model(path, metadata=meta)
    return BenchModel(path, None, "analytic per-pixel ONNX model (tests/onnx_models.py)")


def flops_per_tile_onnx(path: Path, tile: int) -> float:
    """FLOPs (2 x MACs) of Conv, MatMul and Gemm nodes for one ``tile x tile`` input.

    Shapes are read from an actual ONNX Runtime run with every operand exposed as an
    output: static shape inference loses the attention reshapes of a dynamic graph.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort

    from tilesr.denoisers.onnx_backend import read_metadata

    proto = onnx.load(str(path))
    inits = {i.name: tuple(int(d) for d in i.dims) for i in proto.graph.initializer}
    nodes = [n for n in proto.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    graph_io = {o.name for o in proto.graph.output} | {i.name for i in proto.graph.input}
    for node in nodes:
        for name in (node.input[0], node.input[1], node.output[0]):
            if name not in inits and name not in graph_io:
                proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
                graph_io.add(name)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    meta = read_metadata(session, str(path))
    names = [o.name for o in session.get_outputs()]
    x = np.zeros((1, 1, tile, tile), np.float32)
    feeds = {meta.input_noisy: x, meta.input_cond: x, meta.input_timestep: np.zeros(1, np.float32)}
    graph_inputs = {i.name for i in session.get_inputs()}  # a regression graph takes cond only
    feeds = {k: v for k, v in feeds.items() if k in graph_inputs}
    shapes: dict[str, tuple[int, ...]] = dict(inits)
    values = session.run(names, feeds)
    shapes.update({n: tuple(o.shape) for n, o in zip(names, values, strict=True)})
    total = 0.0
    for node in nodes:
        out = shapes[node.output[0]]
        if node.op_type == "Conv":
            total += 2.0 * math_prod(out) * math_prod(shapes[node.input[1]][1:])
        else:
            a = shapes[node.input[0]]
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            total += 2.0 * math_prod(out) * (a[-2] if trans_a else a[-1])
    return total


def math_prod(values: Any) -> float:
    out = 1.0
    for v in values:
        out *= float(v)
    return out


# --------------------------------------------------------------------------- inputs


def simulated_input(folder: Path, hr_size: int, scale: int, *, seed: int = 0) -> Path:
    """An OME-Zarr of the simulated LR image for a ``hr_size``-squared output (cached)."""
    from tilesr.io import write_ome_zarr
    from tilesr.simulate import simulate_large

    path = folder / f"sim_lr_{hr_size}_x{scale}_s{seed}.ome.zarr"
    if not (path / "zarr.json").exists():
        lr, _ = simulate_large((hr_size, hr_size), scale=scale, seed=seed, chunk=1024)
        write_ome_zarr(path, lr, axes="yx", overwrite=True)
    return path


# --------------------------------------------------------------------------- markdown


def markdown_report(text: str) -> Path:
    """argparse type of ``--out``: the markdown file whose region a benchmark rewrites.

    Checked when the arguments are parsed, so that a figure's or a JSON file's name
    there fails at once rather than after the benchmark's minutes of work.
    """
    path = Path(text)
    if path.suffix.lower() != ".md":
        raise argparse.ArgumentTypeError(
            f"{text}: --out is the markdown report whose region is rewritten (a .md file)"
        )
    return path


def replace_region(
    path: Path, body: str, *, region: str = "bench_engine", title: str = "# Benchmarks"
) -> None:
    """Put ``body`` between the ``region`` markers of ``path``, leaving the rest alone."""
    start, end = f"<!-- {region}:start -->", f"<!-- {region}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if path.exists():
        text = path.read_text()
        i, j = text.find(start), text.find(end)
        if i >= 0 and j > i:
            text = text[:i] + block + text[j + len(end) :]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = f"{title}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
