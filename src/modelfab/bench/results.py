"""Benchmark measurements into the registry's model-by-hardware results table.

A measurement (from `modelfab.bench.probe`) holds one set of timings per thread count; each
becomes one row, stamped with the machine's fingerprint and its `hardware_id`, so
`modelfab bench history` can compare one model across machines or many models on one machine.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from modelfab.bench.flops import flops_fraction
from modelfab.errors import InputError

if TYPE_CHECKING:
    from modelfab.registry.store import Registry

# Fingerprint fields that change while the machine stays the same: the CPUs this process may
# use (taskset, cgroups), the OS build and the Python and library versions. They stay in the
# stored fingerprint, but not in the id, so an upgrade does not split a machine's history.
VOLATILE = ("usable_cores", "os", "python", "versions")


def hardware_id(fingerprint: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `fingerprint` minus the `VOLATILE` fields."""
    stable = {k: v for k, v in fingerprint.items() if k not in VOLATILE}
    canonical = json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def with_flops_fractions(measurement: dict[str, Any], peak: dict[str, Any]) -> dict[str, Any]:
    """A copy of `measurement` whose per-thread entries gain `flops_fraction_fp32` and
    `flops_fraction_bf16`: batch-32 FLOP/s over this machine's matmul peak at that thread count
    (`peak` as returned by `modelfab.bench.peak.peaks`).

    Unchanged when the measurement has no `flops_per_text`, or the peak lacks a thread count.
    """
    per_text = measurement.get("flops_per_text")
    out = {**measurement, "at_threads": {k: dict(v) for k, v in measurement["at_threads"].items()}}
    if not per_text:
        return out
    for threads, entry in out["at_threads"].items():
        for dtype in ("fp32", "bf16"):
            peak_flops = peak.get("flops", {}).get(dtype, {}).get(str(threads))
            if peak_flops:
                entry[f"flops_fraction_{dtype}"] = flops_fraction(
                    per_text, entry["throughput_b32"], peak_flops
                )
    return out


# The headline timings of one thread count: their own columns here, the figures records carry;
# everything else a measurement holds goes to `extra`.
HEADLINE = ("latency_b1_p50_ms", "latency_b1_p99_ms", "throughput_b32")


def record_bench(
    registry: Registry,
    model_id: str | None,
    measurement: dict[str, Any],
    hardware: dict[str, Any],
) -> list[int]:
    """Store `measurement` (the dict `measure_bundle`/`measure_teacher` return, optionally passed
    through `with_flops_fractions`) as one row per thread count; returns the new row ids.

    The fp32 fraction is the `flops_fraction_of_peak` column: int8 and fp32 models alike are
    compared with the fp32 peak (see `modelfab.bench.flops`). All rows go in one transaction.
    """
    return registry.add_bench_results(bench_rows(model_id, measurement, hardware))


def bench_rows(
    model_id: str | None, measurement: dict[str, Any], hardware: dict[str, Any]
) -> list[dict[str, Any]]:
    """The bench_results rows (one per thread count) of one measurement."""
    at_threads = measurement.get("at_threads")
    if not isinstance(at_threads, dict) or not at_threads:
        raise InputError("benchmark measurement has no per-thread results (at_threads)")
    hw_id = hardware_id(hardware)
    shared = {
        k: v
        for k, v in measurement.items()
        if k not in ("at_threads", "load_s", "peak_rss_bytes", "size_bytes", "path")
    }
    rows = []
    for threads, entry in sorted(at_threads.items(), key=lambda kv: int(kv[0])):
        extra = {k: v for k, v in entry.items() if k not in HEADLINE}
        extra["measurement"] = shared
        rows.append(
            {
                "model_id": model_id,
                "artifact": str(measurement.get("path", "")),
                "artifact_sha": measurement.get("artifact_sha"),
                "kind": str(measurement.get("kind", "bundle")),
                "backend": str(entry.get("backend", "")),
                "hardware_id": hw_id,
                "hardware": hardware,
                "threads": int(threads),
                "latency_b1_p50_ms": entry["latency_b1_p50_ms"],
                "latency_b1_p99_ms": entry["latency_b1_p99_ms"],
                "throughput_b32": entry["throughput_b32"],
                "peak_rss_bytes": measurement.get("peak_rss_bytes"),
                "load_s": measurement.get("load_s"),
                "size_bytes": measurement.get("size_bytes"),
                "flops_fraction_of_peak": entry.get("flops_fraction_fp32"),
                "extra": extra,
            }
        )
    return rows
