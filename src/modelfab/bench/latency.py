"""Latency and throughput of a classifier: warm up, time per call, report percentiles/medians.

Each phase stops early once its share of `max_seconds` is spent, so one bench call is bounded;
the result says how many calls were actually timed. Batch-1 latency is measured in rounds and
reported as the median over rounds (see `bench_callable`).

These functions time in the calling process; `modelfab.bench.probe` runs them in a fresh child
process so that load time and peak memory belong to the measured model alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from modelfab.atomic import write_text
from modelfab.errors import InputError


def bench_callable(
    fn_batch1: Callable[[], object],
    fn_batch32: Callable[[], object],
    warmup: int = 10,
    repeats: int = 10,
    *,
    b1_calls: int = 200,
    batch_size: int = 32,
    max_seconds: float = 8.0,
    rounds: int = 3,
) -> dict:
    """Time `fn_batch1` per call (p50/p99 over up to `b1_calls` calls) and `fn_batch32`
    (median over up to `repeats` calls, as texts/s for `batch_size` texts per call).

    Half of `max_seconds` goes to each phase, warm-up included; each phase times at least one call.
    The batch-1 calls are split into `rounds` consecutive rounds with an equal share of calls and
    time: the headline p50/p99 are the medians of the per-round values, so one disturbed round
    (another process waking up) moves them less than it moves one pooled percentile. The pooled
    percentiles over all calls are reported too (`*_pooled`).
    """
    if warmup < 0 or repeats < 1 or b1_calls < 1 or batch_size < 1 or max_seconds <= 0:
        raise InputError("bench_callable needs warmup >= 0, repeats, b1_calls, batch_size >= 1")
    if rounds < 1:
        raise InputError(f"bench_callable needs rounds >= 1, got {rounds}")
    rounds = min(rounds, b1_calls)
    clock = time.perf_counter
    budget = max_seconds / 2

    def timed(fn, n: int, deadline: float) -> list[float]:
        seconds: list[float] = []
        while len(seconds) < n and (not seconds or clock() < deadline):
            start = clock()
            fn()
            seconds.append(clock() - start)
        return seconds

    def warm(fn, n: int, deadline: float) -> None:
        for _ in range(n):
            fn()
            if clock() >= deadline:
                break

    # Batch 1: warm up once, then `rounds` rounds sharing the calls and the time equally.
    start = clock()
    warm(fn_batch1, warmup, start + budget)
    per_round = [b1_calls // rounds + (i < b1_calls % rounds) for i in range(rounds)]
    b1_rounds = [
        np.array(timed(fn_batch1, n, start + budget * (i + 1) / rounds)) * 1e3
        for i, n in enumerate(per_round)
    ]
    b1 = np.concatenate(b1_rounds)
    p50s = [float(np.percentile(r, 50)) for r in b1_rounds]
    p99s = [float(np.percentile(r, 99)) for r in b1_rounds]

    deadline = clock() + budget
    warm(fn_batch32, min(warmup, 2), deadline)
    b32 = np.array(timed(fn_batch32, repeats, deadline))
    return {
        "latency_b1_p50_ms": float(np.median(p50s)),
        "latency_b1_p99_ms": float(np.median(p99s)),
        "latency_b1_p50_ms_pooled": float(np.percentile(b1, 50)),
        "latency_b1_p99_ms_pooled": float(np.percentile(b1, 99)),
        "latency_b1_p50_ms_rounds": p50s,
        "latency_b1_p99_ms_rounds": p99s,
        "latency_b1_mean_ms": float(b1.mean()),
        "b1_calls": int(b1.size),
        "rounds": rounds,
        "throughput_b32": float(batch_size / np.median(b32)),
        "latency_b32_p50_ms": float(np.median(b32) * 1e3),
        "b32_repeats": int(b32.size),
        "batch_size": batch_size,
        "warmup": warmup,
        # A p99 over fewer than 200 calls is mostly the maximum: flag it.
        "truncated": bool(b1.size < b1_calls or b32.size < repeats),
    }


def _batch(texts: Sequence[str], batch_size: int) -> list[str]:
    """`batch_size` texts, cycling through `texts`."""
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InputError("benchmark texts must be a non-empty list of strings")
    return [texts[i % len(texts)] for i in range(batch_size)]


def _cycle_single(texts: Sequence[str]) -> Callable[[], list[str]]:
    """Each call returns the next text, so single-text timings see varied lengths."""
    state = {"i": 0}

    def next_one() -> list[str]:
        text = texts[state["i"] % len(texts)]
        state["i"] += 1
        return [text]

    return next_one


def bench_bundle(path: Path, texts: Sequence[str], threads: int = 1, **kwargs) -> dict:
    """End-to-end timing of a bundle (tokenization + onnxruntime + softmax)."""
    from modelfab.export.runtime import BundlePredictor

    batch = _batch(texts, kwargs.get("batch_size", 32))
    predictor = BundlePredictor(path, threads=threads)
    single = _cycle_single(texts)
    result = bench_callable(
        lambda: predictor.predict_proba(single()),
        lambda: predictor.predict_proba(batch),
        **kwargs,
    )
    return {"backend": "onnxruntime", "model": str(path), "threads": threads, **result}


def bench_torch(
    model, tokenizer, texts: Sequence[str], max_length: int, threads: int = 1, **kwargs
) -> dict:
    """End-to-end timing of the PyTorch fp32 model (HF tokenization + forward), the baseline."""
    import torch

    batch = _batch(texts, kwargs.get("batch_size", 32))
    single = _cycle_single(texts)

    def run(batch_texts: list[str]):
        enc = tokenizer(
            batch_texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return torch.softmax(logits.float(), dim=-1)

    from modelfab.torchutil import eval_mode

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with eval_mode(model), torch.inference_mode():
            result = bench_callable(lambda: run(single()), lambda: run(batch), **kwargs)
    finally:
        torch.set_num_threads(previous_threads)
    return {"backend": "torch-fp32", "threads": threads, **result}


def compare(result: dict, baseline: dict) -> dict:
    """Speed-ups of `result` over `baseline` (> 1 means faster)."""
    return {
        "latency_b1_p50_speedup": baseline["latency_b1_p50_ms"] / result["latency_b1_p50_ms"],
        "latency_b1_p99_speedup": baseline["latency_b1_p99_ms"] / result["latency_b1_p99_ms"],
        "throughput_b32_speedup": result["throughput_b32"] / baseline["throughput_b32"],
    }


def write_results(path: Path, results: dict) -> None:
    """Write benchmark results as JSON, atomically."""
    write_text(Path(path), json.dumps(results, indent=2, sort_keys=True) + "\n")
