"""Benchmark timing, FLOP counting, matmul peak and hardware fingerprint, on fake workloads
of known duration and tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from modelfab.bench import peak
from modelfab.bench.flops import flops_fraction, flops_per_text
from modelfab.bench.hardware import CPU_FLAGS, _cpuinfo, fingerprint
from modelfab.bench.latency import bench_callable, compare, write_results
from modelfab.bench.peak import matmul_peak
from modelfab.bench.results import hardware_id
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


def test_bench_callable_reports_medians_over_rounds():
    calls = {"n": 0}

    def b1():
        # Round 2 (calls 11..20) is disturbed throughout: its p50 is slow, the median is not.
        calls["n"] += 1
        time.sleep(0.040 if 10 < calls["n"] <= 20 else 0.001)

    result = bench_callable(b1, lambda: None, warmup=0, repeats=1, b1_calls=30, rounds=3)
    assert result["rounds"] == 3 and result["b1_calls"] == 30
    assert len(result["latency_b1_p50_ms_rounds"]) == 3
    assert result["latency_b1_p50_ms_rounds"][1] >= 39.0
    # 1 ms sleeps against 40 ms ones: a margin wide enough for a loaded CI machine
    assert result["latency_b1_p50_ms"] == sorted(result["latency_b1_p50_ms_rounds"])[1] < 20.0
    assert result["latency_b1_p99_ms"] < 20.0 <= result["latency_b1_p99_ms_pooled"]
    # rounds beyond b1_calls collapse to one call per round
    assert bench_callable(lambda: None, lambda: None, b1_calls=2, rounds=5)["rounds"] == 2
    with pytest.raises(InputError, match="rounds"):
        bench_callable(lambda: None, lambda: None, rounds=0)


class TinyTextModel(torch.nn.Module):
    """Embedding look-up (a gather: 0 FLOPs), mean over tokens, one linear layer."""

    def __init__(self, vocab: int = 50, dim: int = 16, out: int = 3):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.linear = torch.nn.Linear(dim, out)

    def forward(self, input_ids, attention_mask):
        return self.linear(self.embed(input_ids).mean(1))


def test_flops_per_text_counts_the_linear_layer():
    model = TinyTextModel(dim=16, out=3)
    ids = torch.randint(0, 50, (4, 7))
    per_text = flops_per_text(model, ids, torch.ones_like(ids))
    assert per_text == 2 * 16 * 3
    assert flops_fraction(per_text, texts_per_s=1000.0, peak_flops=96_000.0) == 1.0
    with pytest.raises(InputError):
        flops_fraction(per_text, 1000.0, 0.0)


def test_matmul_peak_is_positive_and_restores_threads():
    before = torch.get_num_threads()
    for dtype in ("fp32", "bf16"):
        assert matmul_peak(1, dtype, size=64, repeats=2, max_seconds=0.2) > 0
    assert torch.get_num_threads() == before
    with pytest.raises(InputError, match="dtype"):
        matmul_peak(1, "fp8")


def test_peaks_are_measured_once_per_machine(tmp_path, monkeypatch):
    calls: list[tuple[int, str]] = []

    def fake_peak(threads: int, dtype: str = "fp32", **_: object) -> float:
        calls.append((threads, dtype))
        return 1e9 * threads * (2 if dtype == "bf16" else 1)

    monkeypatch.setattr(peak, "matmul_peak", fake_peak)
    first = peak.peaks(tmp_path)
    assert sorted(calls) == [(1, "bf16"), (1, "fp32"), (2, "bf16"), (2, "fp32")]
    assert first["flops"] == {"fp32": {"1": 1e9, "2": 2e9}, "bf16": {"1": 2e9, "2": 4e9}}
    assert first["hardware_id"] == hardware_id(fingerprint())
    assert (tmp_path / "bench" / peak.CACHE_NAME).is_file()
    calls.clear()
    assert peak.peaks(tmp_path) == first and calls == []  # cached: nothing measured again
    peak.peaks(tmp_path, threads=(1, 4))
    assert sorted(calls) == [(4, "bf16"), (4, "fp32")]  # only the missing thread count
    calls.clear()
    peak.peaks(tmp_path, refresh=True)
    assert len(calls) == 4
    # Another machine gets its own entry in the same cache file.
    calls.clear()
    other = {**fingerprint(), "cpu_model": "Another CPU"}
    assert peak.peaks(tmp_path, hardware=other)["hardware_id"] != first["hardware_id"]
    assert len(calls) == 4


def test_flops_per_text_counts_bert_attention_on_cpu():
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    bert = transformers.BertModel(config, add_pooling_layer=False).eval()
    tokens = 10
    ids = torch.randint(0, 50, (3, tokens))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding is computed all the same
    # Per layer and token: Q, K, V, output projections and the two FFN matmuls, plus QK^T and
    # attention x V over all `tokens` keys (2 FLOPs per multiply-add).
    linear = 2 * (4 * 32 * 32 + 2 * 32 * 64)
    attention = 2 * 2 * tokens * 32
    assert flops_per_text(bert, ids, mask) == 2 * tokens * (linear + attention)
