"""Slow end to end: the real all-MiniLM-L6-v2 teacher on real Debian data, through the CLI's
public API, down to an int8 bundle that predicts without torch."""

from __future__ import annotations

import pytest

from modelfab import paths
from modelfab.data.scenario import DerivedLabel, Filters, ScenarioSpec, SplitSpec
from modelfab.distill.bag import BagStudentConfig
from modelfab.distill.transformer import TransformerStudentConfig
from modelfab.export.runtime import BundlePredictor
from modelfab.pipeline.api import create_scenario, import_data
from modelfab.pipeline.build import build
from modelfab.pipeline.config import BenchConfig, BuildConfig
from modelfab.pipeline.variants import StudentsConfig

SNAPSHOT = paths.debian_snapshot()

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not SNAPSHOT.is_file(), reason="shared Debian snapshot not present")
def test_real_teacher_builds_a_useful_student(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELFAB_REGISTRY_URL", raising=False)
    version = import_data(SNAPSHOT, name="debian")
    spec = ScenarioSpec(
        name="interface-small",
        dataset=version.id,
        text_fields=["summary", "description"],
        derived_label=DerivedLabel(kind="facet", facet="interface"),
        filters=Filters(min_class_count=70, max_per_class=40, exclude_classes=["TODO"]),
        split=SplitSpec(kind="group", group_field="source"),
        unlabeled_pool=40,
    )
    create_scenario(spec)
    config = BuildConfig(
        adapt=("logreg",),
        student=TransformerStudentConfig(epochs=2, min_steps=0),
        students=StudentsConfig(
            families=("transformer", "static-embedding"),
            static=BagStudentConfig(max_length=128, epochs=4, min_steps=0),
            compress=None,
            quantizations=("dynamic-int8",),
            optimizations=(),
        ),
        bench=BenchConfig(threads=(1,), max_seconds=1.0, b1_calls=20),
    )
    result = build(spec.name, config)
    teacher = next(r for r in result.records if r["role"] == "teacher")
    student = next(r for r in result.records if r["chosen"])
    static = next(r for r in result.records if r["family"] == "static-embedding")
    assert static["latency_b1_p50_ms"] < teacher["latency_b1_p50_ms"] / 10
    n_classes = 5  # commandline, daemon, text-mode, web, shell
    assert teacher["macro_f1"] > 2 / n_classes  # well above chance with real features
    assert student["macro_f1"] > 1.5 / n_classes
    assert student["size_bytes"] < 0.25 * teacher["size_bytes"]
    assert student["latency_b1_p50_ms"] < teacher["latency_b1_p50_ms"]
    preds = BundlePredictor(result.bundle).predict(["HTTP server daemon listening on a socket"])
    assert preds[0]["label"] in {"commandline", "daemon", "text-mode", "web", "shell"}
