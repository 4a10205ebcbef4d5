#!/usr/bin/env bash
# One command for the day a GPU is lent: a throughput and parity table of tilesr on CUDA.
# Under 8 minutes, no network needed when the wheels travel along (see below); prints
# one table and writes docs/benchmarks/gpu.json. Without a GPU it says so and exits 0.
#
#   bash tools/gpu_check.sh
#
# ONNX Runtime's GPU build: taken from ./.whl (wheels downloaded beforehand on a machine
# with the registry: pip download --only-binary=:all: --python-version 3.12 -d .whl
# onnxruntime-gpu), else from the package registry. It is installed into its own target
# folder so that it never sits beside the CPU build (both provide the module
# onnxruntime). torch with CUDA is used for the training row only if already installed.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1; then
  "${PYTHON:-python3}" tools/gpu_check.py "$@"   # writes the "no GPU" record and exits 0
  exit $?
fi
site=/tmp/tilesr-gpu-site
if ! python3 -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()" 2>/dev/null; then
  if ls .whl/onnxruntime_gpu-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --find-links .whl --target "$site" onnxruntime-gpu || exit 1
  else
    python3 -m pip install -q --target "$site" onnxruntime-gpu || exit 1
  fi
  export PYTHONPATH="$site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
timeout 470 python3 tools/gpu_check.py "$@"
