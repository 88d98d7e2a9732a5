"""What a benchmark ran on: CPU model and SIMD/AMX flags, cores, memory, library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("torch", "onnxruntime", "transformers", "tokenizers", "onnx", "numpy")


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """(model name, flags) of the first CPU listed; ("", set()) where there is no cpuinfo."""
    model, flags = "", set[str]()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # psutil is optional
        return None


def _version(package: str) -> str | None:
    # Read installed metadata rather than importing: importing torch takes seconds.
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def fingerprint() -> dict:
    """A JSON-ready description of this machine and software, to store with benchmark results."""
    model, flags = _cpuinfo()
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "flags": {flag: flag in flags for flag in CPU_FLAGS},
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": _memory_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in PACKAGES},
    }
