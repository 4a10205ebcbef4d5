"""Where the network's time goes: ONNX Runtime's profiler, per operator type.

    python tools/profile_network.py [--model M.onnx] [--batch 8] [--calls 20] [--threads 2]

Runs `OnnxDenoiser`-equivalent calls (same session options as the engine, plus
`enable_profiling`) on random 128x128 tiles and sums the kernel time of each operator
type, with the FLOPs of the Conv/MatMul/Gemm nodes for their achieved rate. Writes
docs/benchmarks/network-profile.json and prints a table: the share of the time spent
outside convolutions and matmuls is what keeps the network below the GEMM rate.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np
from _bench_common import BUNDLED_MODEL, REPO, flops_per_tile_onnx, now_iso


def profile(model: Path, batch: int, calls: int, threads: int) -> dict[str, float]:
    """Microseconds per operator type over ``calls`` calls of ``batch`` tiles."""
    import onnxruntime as ort

    from tilesr.denoisers.onnx_backend import session_options

    options = session_options(ort, threads)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "prof")
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, 1, 128, 128), dtype=np.float32)
        feeds = {i.name: x for i in session.get_inputs() if len(i.shape) == 4}
        for i in session.get_inputs():
            if len(i.shape) == 1:
                feeds[i.name] = np.full((batch,), 500.0, np.float32)
        session.run(None, feeds)  # warm-up, not counted below
        session.end_profiling()
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
        for _ in range(calls):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / (calls + 1)
    return dict(per_op)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--out", type=Path, default=REPO / "docs" / "benchmarks" / "network-profile.json"
    )
    args = p.parse_args()
    per_op = profile(args.model, args.batch, args.calls, args.threads)
    total = sum(per_op.values())
    gflop = flops_per_tile_onnx(args.model, 128) * args.batch / 1e9
    rows = sorted(per_op.items(), key=lambda kv: -kv[1])
    print(f"batch {args.batch}: {total / 1e3:.1f} ms of kernels per call, {gflop:.2f} GFLOP")
    print("| operator | ms per call | share |")
    print("|---|---|---|")
    for op, us in rows:
        print(f"| {op} | {us / 1e3:.2f} | {us / total:.3f} |")
    gemm_like = sum(
        us
        for op, us in per_op.items()
        if op in ("Conv", "FusedConv", "MatMul", "Gemm", "FusedMatMul", "NchwcConv")
    )
    print(
        f"Conv/MatMul share: {gemm_like / total:.3f}; "
        f"their rate {gflop / (gemm_like / 1e6):.1f} GFLOP/s"
    )
    args.out.write_text(
        json.dumps(
            {
                "date": now_iso(),
                "command": "python tools/profile_network.py",
                "batch": args.batch,
                "threads": args.threads,
                "gflop_per_call": gflop,
                "kernel_us_per_call": per_op,
                "conv_matmul_share": gemm_like / total,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
