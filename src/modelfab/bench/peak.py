"""This machine's measured matmul peak (FLOP/s), fp32 and bf16, at 1 and 2 threads.

A model's achieved FLOP/s means little alone; over the peak of a large square matmul on the
same CPU and thread count it says how much of the machine the model uses. Measuring takes a few
seconds, so the result is cached per machine in MODELFAB_HOME (keyed by `hardware_id`) and
measured again only when torch changes (its kernels set the peak).
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelfab.atomic import write_text
from modelfab.bench.hardware import fingerprint
from modelfab.bench.results import hardware_id
from modelfab.errors import InputError

DTYPES = ("fp32", "bf16")
CACHE_NAME = "matmul-peak.json"


def matmul_peak(
    threads: int,
    dtype: str = "fp32",
    size: int = 1024,
    *,
    warmup: int = 2,
    repeats: int = 5,
    max_seconds: float = 2.0,
) -> float:
    """FLOP/s of `torch.matmul` on two square matrices: 2*n^3 FLOPs over the median time of up
    to `repeats` calls after `warmup` calls, all within about `max_seconds` (at least one call is
    timed). torch's thread count is restored afterwards.

    n is `size`, halved (not below 256) while one call would take more than a tenth of the
    budget: bf16 on a CPU without bf16 instructions (no AVX512_BF16/AMX) is emulated, about
    100x slower than fp32, and a 1024 matmul would take seconds. Its measured peak is then
    honestly low.
    """
    import torch

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if dtype not in dtypes:
        raise InputError(f"matmul_peak dtype must be one of {DTYPES}, got {dtype!r}")
    if threads < 1 or size < 1 or repeats < 1 or warmup < 0 or max_seconds <= 0:
        raise InputError("matmul_peak needs threads, size, repeats >= 1 and max_seconds > 0")
    generator = torch.Generator().manual_seed(0)

    def pair(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.randn(n, n, generator=generator).to(dtypes[dtype]),
            torch.randn(n, n, generator=generator).to(dtypes[dtype]),
        )

    clock = time.perf_counter
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            deadline = clock() + max_seconds
            # Calibrate on a small matmul, then pick the largest size that fits the budget.
            n = min(size, 256)
            a, b = pair(n)
            start = clock()
            torch.matmul(a, b)
            small = clock() - start
            while size > 256 and small * (size / n) ** 3 > max_seconds / 10:
                size //= 2
            if size != n:
                n = size
                a, b = pair(n)
            for _ in range(warmup):
                if clock() >= deadline:
                    break
                torch.matmul(a, b)
            seconds: list[float] = []
            while len(seconds) < repeats and (not seconds or clock() < deadline):
                start = clock()
                torch.matmul(a, b)
                seconds.append(clock() - start)
    finally:
        torch.set_num_threads(previous)
    return 2.0 * n**3 / statistics.median(seconds)


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache file's content; an unreadable or foreign file counts as empty (it is only a
    cache: measuring again is always correct)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def peaks(
    home: Path | None = None,
    threads: tuple[int, ...] = (1, 2),
    dtypes: tuple[str, ...] = DTYPES,
    *,
    refresh: bool = False,
    hardware: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """This machine's matmul peaks, measured once per machine and cached in `home`
    (default: MODELFAB_HOME) as bench/matmul-peak.json.

    Returns {"hardware_id", "torch" (version), "measured_at", "flops": {dtype: {"threads":
    FLOP/s}}}. Only missing (dtype, threads) pairs are measured; `refresh` measures all again.
    """
    import torch

    if home is None:
        from modelfab import paths

        home = paths.home()
    hardware = hardware or fingerprint()
    hw_id = hardware_id(hardware)
    path = Path(home) / "bench" / CACHE_NAME
    cache = _read_cache(path)
    entry = cache.get(hw_id)
    if refresh or not isinstance(entry, dict) or entry.get("torch") != torch.__version__:
        entry = {"hardware_id": hw_id, "torch": torch.__version__, "flops": {}}
    flops = entry.setdefault("flops", {})
    measured = False
    for dtype in dtypes:
        for n in threads:
            if not isinstance(flops.get(dtype, {}).get(str(n)), int | float):
                flops.setdefault(dtype, {})[str(n)] = matmul_peak(n, dtype)
                measured = True
    if measured:
        entry["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        entry["cpu_model"] = hardware.get("cpu_model")
        cache[hw_id] = entry
        write_text(path, json.dumps(cache, indent=2, sort_keys=True) + "\n")
    return entry
