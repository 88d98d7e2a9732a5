"""`make bench`: the foundation scenario built and measured in one run.

Writes bench-results/latest.json (one record per scenario and model variant, plus hardware
and the acceptance bars) and report.md / report.html (readable tables and the plot).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from modelfab import paths
from modelfab.atomic import write_text
from modelfab.bench.hardware import fingerprint
from modelfab.data.scenario import Filters, ScenarioSpec, SplitSpec
from modelfab.pipeline.api import create_scenario, import_data
from modelfab.pipeline.build import build
from modelfab.pipeline.config import BuildConfig
from modelfab.report.render import write_report


def foundation_spec(dataset: str, unlabeled_pool: int = 3000) -> ScenarioSpec:
    """Sections with >= 150 packages, at most 400 per class, split grouped by source, seed 0."""
    return ScenarioSpec(
        name="debian-sections",
        dataset=dataset,
        text_fields=["summary", "description"],
        label_field="section",
        filters=Filters(min_class_count=150, max_per_class=400),
        split=SplitSpec(kind="group", group_field="source"),
        seed=0,
        unlabeled_pool=unlabeled_pool,
    )


def acceptance(records: list[dict]) -> dict:
    """The foundation issue's bars, computed from the records of one run."""
    teacher = next(r for r in records if r["role"] == "teacher")
    student = next(r for r in records if r["role"] == "student")
    return {
        "student_over_teacher_f1": student["macro_f1"] / teacher["macro_f1"],
        "f1_bar_0_97": student["macro_f1"] >= 0.97 * teacher["macro_f1"],
        "latency_speedup_b1_p50": teacher["latency_b1_p50_ms"] / student["latency_b1_p50_ms"],
        "latency_bar_5x": teacher["latency_b1_p50_ms"] >= 5 * student["latency_b1_p50_ms"],
        "size_ratio": student["size_bytes"] / teacher["size_bytes"],
        "size_bar_25pct": student["size_bytes"] <= 0.25 * teacher["size_bytes"],
    }


def run(
    out_dir: Path = Path("bench-results"),
    snapshot: Path | None = None,
    config: BuildConfig | None = None,
) -> dict:
    started = time.time()
    version = import_data(snapshot or paths.debian_snapshot(), name="debian-snapshot")
    spec = foundation_spec(version.id)
    create_scenario(spec)
    result = build(spec.name, config or BuildConfig())
    meta: dict = {
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "wall_s": round(time.time() - started, 1),
        "hardware": fingerprint(),
        "command": "make bench",
    }
    payload = {
        "meta": meta,
        "acceptance": {spec.name: acceptance(result.records)},
        "records": result.records,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "latest.json", json.dumps(payload, indent=2, default=str))
    write_report(result.records, out_dir, meta=meta, title="modelfab bench")
    return payload


if __name__ == "__main__":
    import sys

    from rich.console import Console
    from rich.pretty import pprint

    from modelfab.report.render import rich_table

    out = run()
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(rich_table(out["records"]))
    pprint(out["acceptance"])
