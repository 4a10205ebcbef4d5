"""The two distributions: `tilesr` (CPU ONNX Runtime) and `tilesr-gpu` (onnxruntime-gpu).

Only one ONNX Runtime may be installed in an environment (both packages provide the
module `onnxruntime`; with both, the CPU build wins and CUDA disappears), and an extra
can only add requirements. So the GPU build is a second distribution of the same code.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_no_install_puts_two_onnx_runtimes_together():
    cpu = _project(ROOT / "pyproject.toml")["project"]
    for extra, requirements in cpu.get("optional-dependencies", {}).items():
        assert "onnxruntime-gpu" not in _names(requirements), extra
    assert "onnxruntime" in _names(cpu["dependencies"])
    gpu = _project(ROOT / "packaging" / "tilesr-gpu" / "pyproject.toml")["project"]
    assert gpu["name"] == "tilesr-gpu"
    extras = gpu.get("optional-dependencies", {}).values()
    every = [*gpu["dependencies"], *(r for extra in extras for r in extra)]
    assert "onnxruntime" not in _names(every)
    assert "onnxruntime-gpu" in _names(gpu["dependencies"])


def test_the_gpu_distribution_is_the_same_package_otherwise():
    cpu_file = _project(ROOT / "pyproject.toml")
    gpu_file = _project(ROOT / "packaging" / "tilesr-gpu" / "pyproject.toml")
    cpu, gpu = cpu_file["project"], gpu_file["project"]
    swap = {"onnxruntime": "onnxruntime-gpu"}
    expected = [
        re.sub(r"^onnxruntime(?=[<>=])", swap["onnxruntime"], r) for r in cpu["dependencies"]
    ]
    assert gpu["dependencies"] == expected
    assert (gpu["version"], gpu["requires-python"]) == (cpu["version"], cpu["requires-python"])
    assert gpu["scripts"] == cpu["scripts"]
    assert gpu["optional-dependencies"]["train"] == cpu["optional-dependencies"]["train"]
    cpu_data = cpu_file["tool"]["setuptools"]["package-data"]
    assert gpu_file["tool"]["setuptools"]["package-data"] == cpu_data
    assert gpu_file["tool"]["setuptools"]["packages"]["find"]["include"] == ["tilesr*"]
