"""The `make bench` acceptance bars, computed from hand-made records."""

from __future__ import annotations

import pytest

from modelfab.bench.suite import acceptance, bf16_note, facet_spec


def rec(variant, role, f1, p50, chosen=False):
    return {
        "variant": variant,
        "role": role,
        "macro_f1": f1,
        "latency_b1_p50_ms": p50,
        "chosen": chosen,
    }


def records(chosen_f1=0.70, chosen_p50=2.0, fastest_f1=0.69, fastest_p50=0.4):
    return [
        rec("teacher-logreg-fp32", "teacher", 0.70, 25.0),
        rec("teacher-logreg-int8", "baseline", 0.70, 10.0),
        rec("transformer-l2-int8", "student", chosen_f1, chosen_p50, chosen=True),
        rec("static-embedding-int8", "student", fastest_f1, fastest_p50),
    ]


def test_all_bars_pass():
    out = acceptance(records())
    assert out["chosen"] == "transformer-l2-int8" and out["fastest"] == "static-embedding-int8"
    assert out["chosen_speedup_vs_teacher_fp32"] == pytest.approx(12.5)
    assert out["chosen_speedup_vs_teacher_int8"] == pytest.approx(5.0)
    assert out["fastest_speedup_vs_teacher_fp32"] == pytest.approx(62.5)
    assert out["all_bars"]


@pytest.mark.parametrize(
    "kwargs, bar",
    [
        ({"chosen_f1": 0.689}, "bar_chosen_f1_within_1_point"),
        ({"chosen_p50": 2.6}, "bar_chosen_10x_teacher_fp32"),
        ({"chosen_p50": 2.4, "fastest_p50": 0.4}, None),
        ({"fastest_f1": 0.669}, "bar_fastest_50x_within_3_points"),
        ({"fastest_p50": 0.6}, "bar_fastest_50x_within_3_points"),
    ],
)
def test_each_bar_fails_on_its_own(kwargs, bar):
    out = acceptance(records(**kwargs))
    failing = {k for k, v in out.items() if k.startswith("bar_") and not v}
    assert failing == ({bar} if bar else set())
    assert out["all_bars"] is (bar is None)


def test_int8_bar_compares_with_the_baseline():
    recs = records()
    recs[1]["latency_b1_p50_ms"] = 5.0  # a fast int8 teacher: 2.0 ms is only 2.5x faster
    assert not acceptance(recs)["bar_chosen_3x_teacher_int8"]


def test_bf16_note_names_the_missing_cpu_features():
    assert "lacks" in bf16_note({"flags": {"avx512_bf16": False}})["reason"]
    assert "lacks" not in bf16_note({"flags": {"amx_bf16": True}})["reason"]


def test_facet_spec_groups_by_source_and_drops_todo():
    spec = facet_spec("ds", "use")
    assert spec.name == "debian-use" and spec.split.group_field == "source"
    assert "TODO" in spec.filters.exclude_classes
