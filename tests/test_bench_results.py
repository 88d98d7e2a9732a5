"""The model-by-hardware results table: rows per thread count, filters, FLOP fractions, CLI."""

from __future__ import annotations

import json
import math

import pytest
from sqlalchemy import create_engine, inspect

from modelfab.bench.results import hardware_id, record_bench, with_flops_fractions
from modelfab.cli import main
from modelfab.errors import InputError, NotFoundError
from modelfab.registry import Registry
from modelfab.registry.schema import Base

HARDWARE = {
    "cpu_model": "Test CPU @ 2.0GHz",
    "machine": "x86_64",
    "flags": {"avx2": True, "avx512f": False},
    "logical_cores": 2,
    "usable_cores": 2,
    "memory_bytes": 8 * 2**30,
    "os": "Linux-6.1",
    "python": "3.11.9",
    "versions": {"torch": "2.13.0", "onnxruntime": "1.22.0"},
}
OTHER_MACHINE = {**HARDWARE, "cpu_model": "Other CPU", "flags": {"avx2": True, "avx512f": True}}


def measurement(p50: float = 1.0, flops_per_text: float | None = None) -> dict:
    """A measurement shaped like `measure_bundle`'s, for 1 and 2 threads."""

    def entry(threads: int) -> dict:
        return {
            "backend": "onnxruntime",
            "threads": threads,
            "latency_b1_p50_ms": p50 / threads,
            "latency_b1_p99_ms": 2 * p50 / threads,
            "throughput_b32": 1000.0 * threads,
            "b1_calls": 200,
            "truncated": False,
        }

    return {
        "kind": "bundle",
        "path": "/bundles/tiny",
        "artifact_sha": "a" * 64,
        "load_s": 0.25,
        "peak_rss_bytes": 90_000_000,
        "size_bytes": 12_000_000,
        "flops_per_text": flops_per_text,
        "at_threads": {"1": entry(1), "2": entry(2)},
    }


@pytest.fixture
def registry(registry_url):
    with Registry(registry_url) as reg:
        yield reg


def add_model(registry: Registry, scenario: str, name: str) -> str:
    dataset_id = "d" * 64
    registry.upsert_dataset(dataset_id, "data", "test", 3, ["text"], "/dev/null")
    scenario_id = (scenario * 64)[:64]
    registry.upsert_scenario(scenario_id, scenario, dataset_id, {})
    run_id = registry.start_run(scenario_id, "build")
    return registry.add_model(
        run_id=run_id, scenario_id=scenario_id, name=name, role="student", family="test"
    )


def test_hardware_id_ignores_volatile_fields_only():
    upgraded = {**HARDWARE, "usable_cores": 1, "python": "3.11.10", "versions": {"torch": "3"}}
    assert hardware_id(upgraded) == hardware_id(HARDWARE)
    assert hardware_id(OTHER_MACHINE) != hardware_id(HARDWARE)
    assert hardware_id({**HARDWARE, "memory_bytes": 2**30}) != hardware_id(HARDWARE)
    assert len(hardware_id(HARDWARE)) == 64


def test_rows_round_trip_through_history_with_filters(registry):
    a = add_model(registry, "alpha", "alpha/student")
    b = add_model(registry, "beta", "beta/student")
    ids = record_bench(registry, a, measurement(p50=1.0), HARDWARE)
    record_bench(registry, b, measurement(p50=3.0), OTHER_MACHINE)
    record_bench(registry, None, measurement(p50=5.0), HARDWARE)  # outside the registry
    assert len(ids) == 2

    everything = registry.bench_history()
    assert len(everything) == 6
    assert [r.id for r in everything] == sorted((r.id for r in everything), reverse=True)

    rows = registry.bench_history(model=a[:8])
    assert [(r.threads, r.latency_b1_p50_ms) for r in rows] == [(2, 0.5), (1, 1.0)]
    row = rows[-1]
    assert row.model_name == "alpha/student" and row.scenario_name == "alpha"
    assert row.hardware_id == hardware_id(HARDWARE) and row.hardware == HARDWARE
    assert row.latency_b1_p99_ms == 2.0 and row.throughput_b32 == 1000.0
    assert (row.peak_rss_bytes, row.load_s, row.size_bytes) == (90_000_000, 0.25, 12_000_000)
    assert row.artifact == "/bundles/tiny" and row.artifact_sha == "a" * 64
    assert row.backend == "onnxruntime" and row.kind == "bundle"
    assert row.flops_fraction_of_peak is None
    assert row.extra["b1_calls"] == 200 and row.extra["measurement"]["kind"] == "bundle"

    assert {r.model_id for r in registry.bench_history(scenario="beta")} == {b}
    on_first = registry.bench_history(hardware=hardware_id(HARDWARE)[:10])
    assert {r.model_id for r in on_first} == {a, None}
    assert {r.latency_b1_p50_ms for r in on_first if r.model_id is None} == {5.0, 2.5}
    assert len(registry.bench_history(limit=3)) == 3
    assert registry.bench_history(hardware="0" * 64) == []
    with pytest.raises(NotFoundError):
        registry.bench_history(model="nope")
    with pytest.raises(NotFoundError):
        registry.bench_history(scenario="nope")


def test_bad_rows_are_refused_whole(registry):
    bad = measurement()
    bad["at_threads"]["2"]["latency_b1_p99_ms"] = math.nan
    with pytest.raises(InputError, match="latency_b1_p99_ms"):
        record_bench(registry, None, bad, HARDWARE)
    with pytest.raises(NotFoundError):
        record_bench(registry, "no-such-model", measurement(), HARDWARE)
    with pytest.raises(InputError, match="at_threads"):
        record_bench(registry, None, {"at_threads": {}}, HARDWARE)
    assert registry.bench_history() == []  # the valid 1-thread row did not slip in


def test_deleting_a_model_keeps_its_results(registry):
    model_id = add_model(registry, "alpha", "alpha/student")
    record_bench(registry, model_id, measurement(), HARDWARE)
    registry.delete_run_models(registry.get_model(model_id).run_id)
    rows = registry.bench_history()
    assert len(rows) == 2 and {r.model_id for r in rows} == {None}


def test_flops_fractions_per_thread_count(registry):
    peak = {"flops": {"fp32": {"1": 1e11, "2": 2e11}, "bf16": {"1": 4e11}}}
    out = with_flops_fractions(measurement(flops_per_text=1e6), peak)
    one, two = out["at_threads"]["1"], out["at_threads"]["2"]
    assert one["flops_fraction_fp32"] == pytest.approx(1e6 * 1000 / 1e11)
    assert two["flops_fraction_fp32"] == pytest.approx(1e6 * 2000 / 2e11)
    assert one["flops_fraction_bf16"] == pytest.approx(1e6 * 1000 / 4e11)
    assert "flops_fraction_bf16" not in two  # no bf16 peak at 2 threads
    assert with_flops_fractions(measurement(), peak) == measurement()  # no FLOP count: no change
    record_bench(registry, None, out, HARDWARE)
    fractions = {r.threads: r.flops_fraction_of_peak for r in registry.bench_history()}
    assert fractions == {1: pytest.approx(0.01), 2: pytest.approx(0.01)}


def test_table_is_added_to_an_existing_registry_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    old_tables = [t for name, t in Base.metadata.tables.items() if name != "bench_results"]
    Base.metadata.create_all(engine, tables=old_tables)
    assert "bench_results" not in inspect(engine).get_table_names()
    engine.dispose()
    with Registry(url) as registry:
        record_bench(registry, None, measurement(), HARDWARE)
        assert len(registry.bench_history()) == 2


def test_cli_history_prints_stored_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELFAB_REGISTRY_URL", raising=False)
    with Registry() as registry:
        model_id = add_model(registry, "alpha", "alpha/student")
        record_bench(registry, model_id, measurement(p50=1.234), HARDWARE)
    assert main(["bench", "history"]) == 0
    out = capsys.readouterr().out
    assert "alpha/student" in out and "alpha" in out and "Test CPU" in out
    assert hardware_id(HARDWARE)[:12] in out and "1.23" in out and "90.0" in out
    assert main(["bench", "history", "--json", "--hardware", hardware_id(OTHER_MACHINE)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["bench", "history", "--model", "zzz"]) == 3
    assert main(["bench", "history", "--limit", "0"]) == 2
