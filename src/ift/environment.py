"""What decides float rounding, recorded next to the results a stage produces.

Same code, params and environment give byte-identical outputs; another CPU type, GPU,
library version, thread count or kernel setting gives other floats. `ift verify` compares
these records to choose between exact and statistical comparison.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

# CPU flags that select matmul, bf16 and vector kernels (x86 names, then ARM names, as
# /proc/cpuinfo spells them).
KERNEL_FEATURES = ("amx_bf16", "amx_fp16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                   "avx512f", "avx2", "fma", "asimd", "asimdhp", "bf16", "i8mm", "sve", "sve2", "sme")
# Settings that change which kernels run, or how many threads split a sum.
KERNEL_ENV_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "ATEN_CPU_CAPABILITY",
                   "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                   "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE")
PACKAGES = ("torch", "transformers", "tokenizers", "trl", "accelerate", "datasets", "numpy", "scipy",
            "sacrebleu", "rouge-score")


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux; empty elsewhere).

    Read by hand: it is a few lines, and py-cpuinfo would add a dependency for the same fields.
    """
    try:
        first = path.read_text().split("\n\n", 1)[0]
    except OSError:
        return {}
    fields = (line.split(":", 1) for line in first.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in fields}


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """Vendor, model and the kernel-selecting features of this CPU, and torch's SIMD level."""
    import torch

    info = _cpuinfo(cpuinfo)
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {
        "vendor": info.get("vendor_id") or info.get("CPU implementer") or platform.machine(),
        "model": info.get("model name") or info.get("CPU part") or platform.processor() or "unknown",
        "features": [f for f in KERNEL_FEATURES if f in flags],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


def gpu() -> dict | None:
    """Name and compute capability of the GPU torch uses, with CUDA and cuDNN versions (None without one)."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return {"name": torch.cuda.get_device_name(0), "capability": f"{major}.{minor}",
            "count": torch.cuda.device_count(), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def fingerprint(dtype: str, processes: int = 1) -> dict:
    """Everything that decides this process's float rounding; `dtype` is what the stage computes in,
    `processes` how many training processes split each batch."""
    import torch

    return {
        "cpu": cpu(),
        "gpu": gpu(),
        "threads": torch.get_num_threads(),
        "processes": processes,
        "dtype": dtype,
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "settings": {name: os.environ[name] for name in KERNEL_ENV_VARS if name in os.environ},
    }


def differences(recorded: dict, other: dict, prefix: str = "") -> list[str]:
    """Lines `key: recorded -> other` for every field that differs (nested keys dotted)."""
    lines = []
    for key in sorted(set(recorded) | set(other)):
        a, b = recorded.get(key), other.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a} -> {b}")
    return lines
