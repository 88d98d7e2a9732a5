"""`make bench`: the students issue's scenarios built and measured in one run.

The foundation scenario (Debian sections) plus the `interface::`, `works-with::` and `use::`
debtags facets, all split by source package. Each build trains every student family and
compression variant, benchmarks all of them beside the PyTorch fp32 teacher and its ONNX int8
export, and picks a default student. Writes bench-results/latest.json (one record per scenario
and variant, hardware, matmul peaks, acceptance bars) and report.md / report.html.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from modelfab import paths
from modelfab.atomic import write_text
from modelfab.bench.hardware import fingerprint
from modelfab.data.scenario import DerivedLabel, Filters, ScenarioSpec, SplitSpec
from modelfab.pipeline.api import create_scenario, import_data
from modelfab.pipeline.build import build
from modelfab.pipeline.config import BuildConfig
from modelfab.report.render import write_report

FACETS = ("interface", "works-with", "use")
TEXT_FIELDS = ["summary", "description"]


def foundation_spec(dataset: str, unlabeled_pool: int = 3000) -> ScenarioSpec:
    """Sections with >= 150 packages, at most 400 per class, split grouped by source, seed 0."""
    return ScenarioSpec(
        name="debian-sections",
        dataset=dataset,
        text_fields=TEXT_FIELDS,
        label_field="section",
        filters=Filters(min_class_count=150, max_per_class=400),
        split=SplitSpec(kind="group", group_field="source"),
        seed=0,
        unlabeled_pool=unlabeled_pool,
    )


def facet_spec(dataset: str, facet: str, unlabeled_pool: int = 3000) -> ScenarioSpec:
    """Packages with exactly one tag of `facet`; tags with >= 80 packages, at most 400 each;
    a 20 % validation split. Smaller tags and validation sets made the choice between students
    a coin toss (a class with five validation texts moves macro-F1 by points)."""
    return ScenarioSpec(
        name=f"debian-{facet}",
        dataset=dataset,
        text_fields=TEXT_FIELDS,
        derived_label=DerivedLabel(facet=facet),
        filters=Filters(min_class_count=80, max_per_class=400, exclude_classes=["TODO"]),
        split=SplitSpec(kind="group", group_field="source", val_frac=0.2),
        seed=0,
        unlabeled_pool=unlabeled_pool,
    )


def _speedup(slow: dict, fast: dict) -> float | None:
    a, b = slow.get("latency_b1_p50_ms"), fast.get("latency_b1_p50_ms")
    return a / b if a and b else None


def acceptance(records: list[dict]) -> dict:
    """The students issue's bars for one scenario, from the records of one run.

    Batch-1 throughput ratios are ratios of batch-1 p50 latencies (one text per call).
    """
    teacher = next(r for r in records if r["role"] == "teacher")
    baseline = next(r for r in records if r["role"] == "baseline")
    students = [r for r in records if r["role"] == "student"]
    chosen = next(r for r in students if r.get("chosen"))
    fastest = min(students, key=lambda r: r["latency_b1_p50_ms"] or float("inf"))
    speed_fp32 = _speedup(teacher, chosen)
    speed_int8 = _speedup(baseline, chosen)
    fastest_speed = _speedup(teacher, fastest)
    out = {
        "teacher_macro_f1": teacher["macro_f1"],
        "chosen": chosen["variant"],
        "chosen_macro_f1": chosen["macro_f1"],
        "chosen_f1_delta_points": 100 * (chosen["macro_f1"] - teacher["macro_f1"]),
        "chosen_speedup_vs_teacher_fp32": speed_fp32,
        "chosen_speedup_vs_teacher_int8": speed_int8,
        "fastest": fastest["variant"],
        "fastest_macro_f1": fastest["macro_f1"],
        "fastest_f1_delta_points": 100 * (fastest["macro_f1"] - teacher["macro_f1"]),
        "fastest_speedup_vs_teacher_fp32": fastest_speed,
    }
    out["bar_chosen_f1_within_1_point"] = chosen["macro_f1"] >= teacher["macro_f1"] - 0.01
    out["bar_chosen_10x_teacher_fp32"] = bool(speed_fp32 and speed_fp32 >= 10)
    out["bar_chosen_3x_teacher_int8"] = bool(speed_int8 and speed_int8 >= 3)
    out["bar_fastest_50x_within_3_points"] = bool(
        fastest_speed and fastest_speed >= 50 and fastest["macro_f1"] >= teacher["macro_f1"] - 0.03
    )
    out["all_bars"] = all(v for k, v in out.items() if k.startswith("bar_"))
    return out


def bf16_note(hardware: dict) -> dict:
    """Why no bf16 variant is exported on this machine (or that one could be)."""
    flags = hardware.get("flags", {})
    has_bf16 = bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))
    return {
        "cpu_bf16": has_bf16,
        "exported": False,
        "reason": (
            "onnxruntime's CPU execution provider runs bf16 graphs through casts, not bf16 "
            "matmul kernels, so a bf16 bundle cannot be faster than int8 here"
            + ("" if has_bf16 else "; this CPU also lacks avx512_bf16 and amx_bf16")
        ),
    }


def run(
    out_dir: Path = Path("bench-results"),
    snapshot: Path | None = None,
    config: BuildConfig | None = None,
    facets: tuple[str, ...] = FACETS,
) -> dict:
    started = time.time()
    version = import_data(snapshot or paths.debian_snapshot(), name="debian-snapshot")
    specs = [foundation_spec(version.id)] + [facet_spec(version.id, f) for f in facets]
    records: list[dict] = []
    accepted: dict[str, dict] = {}
    choices: dict[str, dict] = {}
    for spec in specs:
        create_scenario(spec, replace=True)
        result = build(spec.name, config or BuildConfig())
        records += result.records
        accepted[spec.name] = acceptance(result.records)
        choices[spec.name] = result.choice
    hardware = fingerprint()
    from modelfab.bench.peak import peaks

    meta: dict = {
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "wall_s": round(time.time() - started, 1),
        "hardware": hardware,
        "matmul_peak_flops": peaks().get("flops"),
        "bf16": bf16_note(hardware),
        "command": "make bench",
    }
    payload = {"meta": meta, "acceptance": accepted, "choices": choices, "records": records}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "latest.json", json.dumps(payload, indent=2, default=str))
    write_report(records, out_dir, meta=meta, title="modelfab bench")
    return payload


if __name__ == "__main__":
    import sys

    from rich.console import Console
    from rich.pretty import pprint

    from modelfab.report.render import rich_table

    out = run()
    console = Console() if sys.stdout.isatty() else Console(width=220)
    console.print(rich_table(out["records"]))
    pprint(out["acceptance"])
