"""Benchmark timing and hardware fingerprint, on fake workloads of known duration."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from modelfab.bench.hardware import CPU_FLAGS, _cpuinfo, fingerprint
from modelfab.bench.latency import bench_callable, compare, write_results
from modelfab.errors import InputError


def test_bench_callable_times_each_call():
    calls = {"b1": 0, "b32": 0}

    def b1():
        calls["b1"] += 1
        # Every 20th call is slow: per-call timing puts it in p99, not in p50.
        time.sleep(0.020 if calls["b1"] % 20 == 0 else 0.001)

    def b32():
        calls["b32"] += 1
        time.sleep(0.010)

    result = bench_callable(b1, b32, warmup=3, repeats=5, max_seconds=10)
    assert calls == {"b1": 3 + 200, "b32": 2 + 5}
    assert result["b1_calls"] == 200 and result["b32_repeats"] == 5
    assert not result["truncated"]
    assert 1.0 <= result["latency_b1_p50_ms"] < 5.0
    assert result["latency_b1_p99_ms"] >= 19.0
    # 32 texts per ~10 ms call: at most 3200 texts/s, less only by scheduling overhead.
    assert 1000 < result["throughput_b32"] <= 3200
    assert 10.0 <= result["latency_b32_p50_ms"] < 30.0


def test_bench_callable_respects_time_budget():
    start = time.perf_counter()
    result = bench_callable(
        lambda: time.sleep(0.05), lambda: time.sleep(0.05), warmup=1, max_seconds=0.4
    )
    assert time.perf_counter() - start < 1.5
    assert 1 <= result["b1_calls"] < 200 and result["truncated"]
    assert result["b32_repeats"] >= 1


def test_bench_callable_rejects_bad_parameters():
    with pytest.raises(InputError):
        bench_callable(lambda: None, lambda: None, repeats=0)


def test_compare_and_write_results(tmp_path):
    base = {"latency_b1_p50_ms": 10.0, "latency_b1_p99_ms": 20.0, "throughput_b32": 100.0}
    fast = {"latency_b1_p50_ms": 2.5, "latency_b1_p99_ms": 5.0, "throughput_b32": 400.0}
    ratios = compare(fast, base)
    assert ratios == {
        "latency_b1_p50_speedup": 4.0,
        "latency_b1_p99_speedup": 4.0,
        "throughput_b32_speedup": 4.0,
    }
    write_results(tmp_path / "r" / "bench.json", {"fast": fast, "ratios": ratios})
    assert json.loads((tmp_path / "r" / "bench.json").read_text())["ratios"] == ratios


def test_fingerprint_keys():
    fp = fingerprint()
    assert {"cpu_model", "flags", "logical_cores", "memory_bytes", "python", "versions"} <= set(fp)
    assert set(fp["flags"]) == set(CPU_FLAGS)
    assert all(isinstance(v, bool) for v in fp["flags"].values())
    assert fp["logical_cores"] >= 1 and fp["memory_bytes"] > 0
    assert fp["versions"]["onnxruntime"] and fp["versions"]["numpy"]
    json.dumps(fp)


def test_cpuinfo_parsing(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Test CPU @ 2.0GHz\nflags\t\t: fpu avx2 avx512f amx_tile\n\n"
        "processor\t: 1\nmodel name\t: Test CPU @ 2.0GHz\nflags\t\t: fpu\n"
    )
    model, flags = _cpuinfo(cpuinfo)
    assert model == "Test CPU @ 2.0GHz"
    assert {"avx512f", "amx_tile"} <= flags and "avx512_vnni" not in flags
    assert _cpuinfo(tmp_path / "missing") == ("", set())


def test_fingerprint_does_not_import_torch():
    code = (
        "import sys; from modelfab.bench.hardware import fingerprint; fp = fingerprint(); "
        "assert 'torch' not in sys.modules; print(fp['versions']['torch'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() != ""
