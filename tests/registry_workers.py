"""A registry writer for tests/test_registry_postgres.py, run in spawned processes: kept apart
from the test module so a worker imports only the registry (not torch)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from modelfab.errors import InputError
from modelfab.registry import CostRecord, Registry

WORKERS = 4
RUNS_PER_WORKER = 5
SHARED_DATASET = "d" * 64
SHARED_SCENARIO = "s" * 64


def cost(stage: str) -> CostRecord:
    return CostRecord(stage=stage, cpu_s=1.0, wall_s=2.0, peak_rss_bytes=1 << 20)


def write_concurrently(url: str, worker: int, barrier: Any, out_dir: str) -> None:
    """One worker process: all workers open the (table-less) registry at the same moment, then
    register the same dataset and scenario, race for one scenario name and one model id, and
    record runs with models, metrics, costs and benchmark rows of their own."""
    outcome: dict[str, Any] = {"name_won": 0, "name_refused": 0, "dup_refused": 0, "error": None}
    try:
        barrier.wait(timeout=60)  # all create the tables at once ...
        with Registry(url) as r:
            barrier.wait(timeout=60)  # ... and write the same rows at the same moment
            r.upsert_dataset(SHARED_DATASET, "shared", "test", 10, ["text", "label"], "/d")
            r.upsert_dataset(str(worker) * 64, f"own{worker}", "test", worker, ["text"], "/o")
            sc = r.upsert_scenario(SHARED_SCENARIO, "shared", SHARED_DATASET, {"task": "clf"})
            try:
                r.upsert_scenario(f"c{worker}".ljust(64, "0"), "contested", SHARED_DATASET, {})
                outcome["name_won"] += 1
            except InputError as exc:
                assert "already used" in str(exc), exc
                outcome["name_refused"] += 1
            for i in range(RUNS_PER_WORKER):
                r.upsert_dataset(SHARED_DATASET, "shared", "test", 10, ["text", "label"], "/d")
                run_id = r.start_run(sc.id, "build", {"worker": worker, "i": i})
                teacher, student = uuid.uuid4().hex, uuid.uuid4().hex
                common = {"run_id": run_id, "scenario_id": sc.id, "family": "f"}
                r.add_models(
                    [
                        {**common, "model_id": teacher, "name": "t", "role": "teacher"}
                        | {"metrics": {"test": {"f1": 0.5}}, "costs": [cost("adapt")]},
                        {**common, "model_id": student, "name": "s", "role": "student"}
                        | {"parent_id": teacher, "metrics": {"test": {"f1": 0.4}}},
                    ],
                    bench_results=[
                        {
                            "model_id": student,
                            "artifact": f"/bundles/{student}",
                            "kind": "bundle",
                            "backend": "onnxruntime",
                            "hardware_id": "h" * 64,
                            "hardware": {"cpu": "test"},
                            "threads": 1,
                            "latency_b1_p50_ms": 1.0,
                            "latency_b1_p99_ms": 2.0,
                            "throughput_b32": 100.0,
                        }
                    ],
                    run_costs=[(run_id, "label", cost("label"))],
                )
                r.record_cost(run_id, "eval", cost("eval"), model_id=student)
                r.finish_run(run_id, "succeeded")
            try:
                r.add_model(**common, model_id="dup", name=f"dup{worker}", role="student")
            except InputError:
                outcome["dup_refused"] += 1
    except BaseException as exc:  # reported to the test through the outcome file
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        barrier.abort()  # the others stop waiting for this one
    Path(out_dir, f"{worker}.json").write_text(json.dumps(outcome))
