#!/usr/bin/env bash
# Install both distributions into fresh virtual environments and list ONNX Runtime's
# providers in each (no GPU needed: a GPU build lists CUDAExecutionProvider on any
# machine). Needs the package registry; writes docs/benchmarks/gpu-install.json.
#
#   bash tools/check_gpu_install.sh [WORKDIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
out="$repo/docs/benchmarks/gpu-install.json"
mkdir -p "$work" "$(dirname "$out")"

providers() {  # venv -> JSON line: installed ORT distributions and providers
  "$1/bin/python" - <<'PY'
import importlib.metadata as md, json, onnxruntime as ort
dists = []
for d in ("onnxruntime", "onnxruntime-gpu"):
    try:
        dists.append(f"{d}=={md.version(d)}")
    except md.PackageNotFoundError:
        pass
print(json.dumps({"ort_distributions": dists, "providers": ort.get_available_providers()}))
PY
}

install() {  # name, what to pip install
  local venv="$work/$1"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$2" >"$work/$1.log" 2>&1
  providers "$venv"
}

cpu=$(install cpu "$repo")
gpu=$(install gpu "$repo/packaging/tilesr-gpu")
# the install the README used to give: the CPU package plus the GPU runtime beside it
"$work/cpu/bin/pip" install -q onnxruntime-gpu >>"$work/cpu.log" 2>&1
both=$(providers "$work/cpu")
printf '{"date": "%s", "tilesr": %s, "tilesr-gpu": %s, "tilesr + onnxruntime-gpu": %s}\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$cpu" "$gpu" "$both" | tee "$out"
case "$gpu" in *CUDAExecutionProvider*) echo "tilesr-gpu lists CUDA: ok";;
  *) echo "tilesr-gpu does not list CUDAExecutionProvider" >&2; exit 1;; esac
