"""The marginal-cost ledger of a factory run: what each scenario's models cost, in order.

Everything comes from the registry: each scenario's build run and its `costs` rows (CPU s,
wall s, peak RSS, labels, teacher forward passes, cache hits per stage, measured by
registry.ledger.Meter), its models and metrics. A skipped scenario shows the cost of the
build that made its models. Work a killed build did before it died is not in the ledger (its
cost rows are written with its models), except what it left in the feature cache, which the
resumed build then counts as cache hits.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from modelfab.factory.bar import student_bar
from modelfab.registry import FactoryRunRecord, Registry

DEFAULT_PRICE_PER_CORE_HOUR = 0.05  # USD; roughly an on-demand cloud vCPU-hour


@dataclass
class ScenarioCost:
    scenario: str
    order: int | None
    status: str
    run_id: str | None
    models: int = 0
    cpu_s: float = 0.0  # metered stages of its build run (the registry's costs rows)
    wall_s: float = 0.0
    task_cpu_s: float | None = None  # the whole task in this factory run (None: skipped)
    task_wall_s: float | None = None
    peak_rss_bytes: int = 0
    labels_used: int = 0
    teacher_passes: int = 0
    cache_hits: int = 0
    core_hours: float = 0.0
    cost: float = 0.0
    chosen: str | None = None
    chosen_model_id: str | None = None
    macro_f1: float | None = None
    teacher_macro_f1: float | None = None
    meets_bar: bool = False
    misses: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # CPU s per stage kind

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ledger:
    run: FactoryRunRecord
    price_per_core_hour: float
    currency: str
    scenarios: list[ScenarioCost]

    def summary(self) -> dict[str, Any]:
        built = [s for s in self.scenarios if s.order is not None]
        built.sort(key=lambda s: s.order or 0)
        first = built[0].cpu_s if built else None
        rest = [s.cpu_s for s in built[1:]]
        median_rest = statistics.median(rest) if rest else None
        total = sum(s.cpu_s for s in built)
        tasks = [s.task_cpu_s for s in built]
        task_ratio = None
        if len(tasks) > 1 and all(t is not None for t in tasks) and tasks[0]:
            task_ratio = statistics.median(tasks[1:]) / tasks[0]  # type: ignore[type-var,operator]
        return {
            "factory_run": self.run.id,
            "recipe": self.run.recipe_name,
            "engine": self.run.engine,
            "status": self.run.status,
            "scenarios": len(self.scenarios),
            "built": sum(s.status == "built" for s in self.scenarios),
            "skipped": sum(s.status == "skipped" for s in self.scenarios),
            "failed": sum(s.status == "failed" for s in self.scenarios),
            "first_cpu_s": first,
            "median_rest_cpu_s": median_rest,
            "rest_over_first": (median_rest / first) if first and median_rest is not None else None,
            "task_rest_over_first": task_ratio,
            "total_cpu_s": total,
            "total_wall_s": sum(s.wall_s for s in built),
            "core_hours": total / 3600,
            "cost": total / 3600 * self.price_per_core_hour,
            "price_per_core_hour": self.price_per_core_hour,
            "currency": self.currency,
            "teacher_passes": sum(s.teacher_passes for s in built),
            "cache_hits": sum(s.cache_hits for s in built),
            "meets_bar": sum(s.meets_bar for s in built),
        }


def _stage_kind(stage: str) -> str:
    return stage.split(":", 1)[0]


def records_of_run(registry: Registry, run_id: str) -> list[dict]:
    """The build's models as bench-format records (role, variant, chosen, F1, latency)."""
    out = []
    for m in registry.list_models():
        if m.run_id != run_id:
            continue
        metrics = registry.metrics(m.id)
        out.append(
            {
                "model_id": m.id,
                "variant": m.name.split("/", 1)[-1],
                "role": m.role,
                "chosen": bool(m.recipe.get("chosen")),
                "macro_f1": metrics.get("test", {}).get("macro_f1"),
                "val_macro_f1": metrics.get("val", {}).get("macro_f1"),
                "latency_b1_p50_ms": metrics.get("bench", {}).get("latency_b1_p50_ms"),
            }
        )
    return out


def scenario_cost(registry: Registry, item: dict, price: float) -> ScenarioCost:
    row = ScenarioCost(item["scenario"], item.get("order"), item["status"], item.get("run_id"))
    if item["status"] == "built":
        row.task_cpu_s, row.task_wall_s = item.get("task_cpu_s"), item.get("task_wall_s")
    if not row.run_id:
        return row
    costs = registry.costs(run_id=row.run_id)
    row.cpu_s = sum(c.cpu_s for c in costs)
    row.wall_s = sum(c.wall_s for c in costs)
    row.peak_rss_bytes = max((c.peak_rss_bytes for c in costs), default=0)
    row.labels_used = max((c.labeled_examples for c in costs), default=0)
    row.teacher_passes = sum(c.teacher_forward_passes for c in costs)
    row.cache_hits = sum(c.cache_hits for c in costs)
    for c in costs:
        kind = _stage_kind(c.stage)
        row.stages[kind] = row.stages.get(kind, 0.0) + c.cpu_s
    row.core_hours = row.cpu_s / 3600
    row.cost = row.core_hours * price
    records = records_of_run(registry, row.run_id)
    row.models = len(records)
    chosen = next((r for r in records if r["role"] == "student" and r["chosen"]), None)
    teacher = next((r for r in records if r["role"] == "teacher"), None)
    if chosen is not None:
        row.chosen, row.chosen_model_id = chosen["variant"], chosen["model_id"]
        row.macro_f1 = chosen["macro_f1"]
    if teacher is not None:
        row.teacher_macro_f1 = teacher["macro_f1"]
    if chosen is not None and teacher is not None and any(r["role"] == "baseline" for r in records):
        bar = student_bar(records)
        row.meets_bar, row.misses = bool(bar["all_bars"]), list(bar["misses"])
    return row


def ledger(
    registry: Registry,
    run: str | FactoryRunRecord,
    price_per_core_hour: float = DEFAULT_PRICE_PER_CORE_HOUR,
    currency: str = "USD",
) -> Ledger:
    from modelfab.errors import InputError

    if not price_per_core_hour >= 0:
        raise InputError(f"price per core-hour must be >= 0, not {price_per_core_hour}")
    record = registry.get_factory_run(run) if isinstance(run, str) else run
    rows = [scenario_cost(registry, item, price_per_core_hour) for item in record.scenarios]
    rows.sort(key=lambda s: (s.order is None, s.order or 0))
    return Ledger(record, price_per_core_hour, currency, rows)
