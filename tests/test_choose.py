"""Choosing one student under a budget, on hand-made bench records: front, policies, reasons."""

from __future__ import annotations

import json

import pytest

from modelfab.bench.choose import (
    DEFAULT_TOLERANCE,
    POLICY_FALLBACK_ACCURATE,
    POLICY_FALLBACK_FASTEST,
    POLICY_FASTEST,
    POLICY_FASTEST_AT_PARITY,
    POLICY_MOST_ACCURATE,
    Budget,
    card_entry,
    choose,
    pareto_front,
)
from modelfab.errors import InputError


def _rec(variant, val_f1, p50, size_mb=10.0, role="student", test_f1=None, **extra):
    return {
        "scenario": "tickets",
        "variant": variant,
        "role": role,
        "val_macro_f1": val_f1,
        "macro_f1": val_f1 if test_f1 is None else test_f1,
        "latency_b1_p50_ms": p50,
        "size_bytes": None if size_mb is None else int(size_mb * 1e6),
        **extra,
    }


TEACHER = _rec("teacher-fp32", 0.655, 27.1, size_mb=90, role="teacher")
BASELINE = _rec("teacher-int8", 0.650, 0.01, size_mb=25, role="baseline")  # fastest of all


def students():
    """Teacher at 0.655: floor 0.645 by default."""
    return [
        _rec("static-emb", 0.651, 0.21, size_mb=5),  # within 1 point, fastest such
        _rec("l2-int8", 0.670, 4.5, size_mb=16),  # better than the teacher
        _rec("hashed", 0.600, 0.10, size_mb=2),  # fastest, too weak
        _rec("l4-fp32", 0.690, 20.0, size_mb=60),  # most accurate, slow and big
    ]


def _names(records):
    return [r["variant"] for r in records]


# --------------------------------------------------------------------------- Pareto front


def test_pareto_front_drops_dominated_points_and_sorts_by_latency():
    recs = [
        _rec("slow-good", 0.9, 10.0),
        _rec("fast-bad", 0.5, 1.0),
        _rec("dominated", 0.6, 5.0),  # slower and worse than mid
        _rec("mid", 0.7, 3.0),
        _rec("worse-same-speed", 0.65, 3.0),  # same latency as mid, lower F1
        _rec("slower-same-f1", 0.7, 4.0),  # same F1 as mid, slower
    ]
    assert _names(pareto_front(recs)) == ["fast-bad", "mid", "slow-good"]


def test_pareto_front_keeps_exact_ties_and_skips_missing_values():
    recs = [
        _rec("a", 0.8, 2.0),
        _rec("twin", 0.8, 2.0),
        _rec("no-latency", 0.99, None),
        _rec("no-f1", None, 0.01),
        _rec("nan", float("nan"), 0.01),
        _rec("b", 0.9, 5.0),
    ]
    assert _names(pareto_front(recs)) == ["a", "twin", "b"]
    assert pareto_front([]) == []


def test_pareto_front_on_other_axes():
    recs = [_rec("val-best", 0.9, 2.0, test_f1=0.5), _rec("test-best", 0.8, 2.0, test_f1=0.95)]
    assert _names(pareto_front(recs)) == ["val-best"]
    assert _names(pareto_front(recs, y="macro_f1")) == ["test-best"]


# --------------------------------------------------------------------------- policies


def test_default_picks_the_fastest_student_at_teacher_parity():
    choice = choose([TEACHER, BASELINE, *students()], Budget(), TEACHER)
    assert choice.record["variant"] == "l2-int8"  # static-emb is faster but below the teacher
    assert choice.policy == POLICY_FASTEST_AT_PARITY
    assert choice.f1_floor == pytest.approx(0.655 - DEFAULT_TOLERANCE)
    assert choice.reason == (
        "fastest student whose validation macro-F1 0.670 is at or above the teacher's 0.655; "
        "4.5 ms vs 27.1 ms for the teacher"
    )
    assert set(choice.rejected) == {"hashed"}
    assert "0.600 is 4.5 points below the F1 floor 0.645" in choice.rejected["hashed"]
    assert choice.front == ["hashed", "static-emb", "l2-int8", "l4-fp32"]


def below_teacher():
    """students() without the two that reach the teacher's 0.655."""
    return [r for r in students() if r["val_macro_f1"] < 0.655]


def test_default_falls_back_to_fastest_within_one_point_when_none_reaches_the_teacher():
    choice = choose([TEACHER, BASELINE, *below_teacher()], Budget(), TEACHER)
    assert choice.record["variant"] == "static-emb"
    assert choice.policy == POLICY_FASTEST
    assert choice.reason == (
        "fastest student whose validation macro-F1 0.651 is within 1.0 point of the "
        "teacher's 0.655 (none reaches the teacher's); 0.21 ms vs 27.1 ms for the teacher"
    )


def test_a_student_exactly_at_the_teacher_counts_as_parity():
    twin = _rec("twin", 0.655, 3.0)
    choice = choose([*below_teacher(), twin], Budget(), TEACHER)
    assert choice.record["variant"] == "twin" and choice.policy == POLICY_FASTEST_AT_PARITY


def test_default_tolerance_is_a_parameter():
    choice = choose(students(), Budget(), TEACHER, default_tolerance=0.0)
    assert choice.record["variant"] == "l2-int8"  # static-emb at 0.651 < 0.655 now fails
    assert "at or above the teacher's 0.655" in choice.reason


def test_student_exactly_on_the_floor_passes_despite_float_noise():
    on_floor = _rec("on-floor", 0.645, 0.05)  # 0.655 - 0.01 == 0.6449999...
    assert choose([*below_teacher(), on_floor], Budget(), TEACHER).record["variant"] == "on-floor"


def test_min_f1_picks_fastest_above_it():
    choice = choose(students(), Budget(min_f1=0.66), TEACHER)
    assert choice.record["variant"] == "l2-int8"
    assert choice.policy == POLICY_FASTEST
    assert "is at or above min_f1 0.66" in choice.reason
    assert (
        choice.rejected["static-emb"] == "validation macro-F1 0.651 is 0.9 points below min_f1 0.66"
    )


def test_min_f1_with_latency_budget_still_picks_fastest():
    choice = choose(students(), Budget(min_f1=0.6, max_latency_ms=5), TEACHER)
    assert choice.record["variant"] == "hashed"
    assert choice.policy == POLICY_FASTEST
    assert "within max_latency_ms 5" in choice.reason


def test_latency_budget_without_min_f1_picks_most_accurate_within_it():
    choice = choose(students(), Budget(max_latency_ms=5.0), TEACHER)
    assert choice.record["variant"] == "l2-int8"
    assert choice.policy == POLICY_MOST_ACCURATE
    assert choice.reason.startswith("most accurate student within max_latency_ms 5: ")
    assert choice.rejected["l4-fp32"] == "p50 20 ms is 15 ms over max_latency_ms 5"


def test_size_budget_without_min_f1_picks_most_accurate_within_it():
    choice = choose(students(), Budget(max_size_mb=8), TEACHER)
    assert choice.record["variant"] == "static-emb"
    assert choice.policy == POLICY_MOST_ACCURATE
    assert "within max_size_mb 8" in choice.reason
    assert choice.rejected["l2-int8"] == "size 16 MB is 8 MB over max_size_mb 8"


def test_ties_break_towards_the_faster_or_the_more_accurate():
    twins = [_rec("slow", 0.7, 3.0), _rec("fast", 0.7, 1.0)]
    assert choose(twins, Budget(max_latency_ms=10), TEACHER).record["variant"] == "fast"
    same_speed = [_rec("worse", 0.66, 1.0), _rec("better", 0.68, 1.0)]
    assert choose(same_speed, Budget(), TEACHER).record["variant"] == "better"


def test_nothing_meets_min_f1_picks_most_accurate_and_says_so():
    choice = choose(students(), Budget(min_f1=0.8), TEACHER)
    assert choice.record["variant"] == "l4-fp32"
    assert choice.policy == POLICY_FALLBACK_ACCURATE
    assert choice.reason.startswith(
        "no student meets min_f1 0.8; picked the most accurate: validation macro-F1 0.690, "
        "11.0 points short"
    )
    assert set(choice.rejected) == {r["variant"] for r in students()}


def test_nothing_meets_floor_within_latency_picks_most_accurate_within_latency():
    choice = choose(students(), Budget(max_latency_ms=1.0, min_f1=0.7), TEACHER)
    assert choice.record["variant"] == "static-emb"  # l4-fp32 is more accurate but too slow
    assert choice.policy == POLICY_FALLBACK_ACCURATE
    assert "picked the most accurate within max_latency_ms 1: validation macro-F1 0.651" in (
        choice.reason
    )


def test_nothing_meets_latency_or_size_picks_fastest_and_says_by_how_much():
    choice = choose(students(), Budget(max_latency_ms=0.05, max_size_mb=1), TEACHER)
    assert choice.record["variant"] == "hashed"
    assert choice.policy == POLICY_FALLBACK_FASTEST
    assert choice.reason.startswith(
        "no student is within max_latency_ms 0.05 and max_size_mb 1; picked the fastest overall: "
        "p50 0.1 ms is 0.05 ms over max_latency_ms 0.05; size 2 MB is 1 MB over max_size_mb 1"
    )


def test_missing_measurements_fail_the_limits_they_are_checked_against():
    recs = [_rec("unmeasured", 0.7, None, size_mb=None), _rec("ok", 0.66, 2.0)]
    choice = choose(recs, Budget(max_latency_ms=5, max_size_mb=50), TEACHER)
    assert choice.record["variant"] == "ok"
    assert "no p50 latency measured" in choice.rejected["unmeasured"]
    assert "no size measured" in choice.rejected["unmeasured"]


# --------------------------------------------------------------------------- what competes


def test_only_students_are_candidates():
    # Teacher and baseline pass every limit and are fastest/most accurate; neither may win.
    teacher = _rec("teacher-fp32", 0.99, 0.001, role="teacher")
    choice = choose([teacher, BASELINE, _rec("only", 0.985, 5.0)], Budget(), teacher)
    assert choice.record["variant"] == "only"
    assert choice.front == ["only"] and choice.rejected == {}


def test_selection_uses_validation_not_test_f1():
    leaky = _rec("test-star", 0.60, 0.05, test_f1=0.99)  # fastest, great on test, weak on val
    honest = _rec("val-good", 0.66, 1.0, test_f1=0.62)
    choice = choose([leaky, honest], Budget(), TEACHER)
    assert choice.record["variant"] == "val-good"
    assert choose([leaky, honest], Budget(max_latency_ms=2), TEACHER).record is honest
    fallback = choose([leaky, honest], Budget(min_f1=0.9), TEACHER)
    assert fallback.record is honest  # "most accurate" is on validation too


def test_empty_or_studentless_candidates_are_input_errors():
    with pytest.raises(InputError, match="no candidates"):
        choose([], Budget(), TEACHER)
    with pytest.raises(InputError, match="no student"):
        choose([TEACHER, BASELINE], Budget(), TEACHER)


def test_mixed_scenarios_and_duplicate_variants_are_input_errors():
    other = dict(_rec("x", 0.7, 1.0), scenario="reviews")
    with pytest.raises(InputError, match="one scenario at a time"):
        choose([*students(), other], Budget(), TEACHER)
    with pytest.raises(InputError, match="unique"):
        choose([*students(), _rec("hashed", 0.7, 1.0)], Budget(), TEACHER)


def test_teacher_without_val_f1_needs_min_f1():
    bare_teacher = {"variant": "teacher-fp32", "role": "teacher", "latency_b1_p50_ms": 27.1}
    with pytest.raises(InputError, match="give min_f1"):
        choose(students(), Budget(), bare_teacher)
    assert choose(students(), Budget(min_f1=0.6), bare_teacher).record["variant"] == "hashed"


# --------------------------------------------------------------------------- budget & card


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_latency_ms": 0}, "max_latency_ms must be a positive number of milliseconds"),
        ({"max_latency_ms": -1.0}, "max_latency_ms"),
        ({"max_latency_ms": float("inf")}, "max_latency_ms"),
        ({"max_size_mb": -5}, "max_size_mb must be a positive number of megabytes"),
        ({"max_size_mb": True}, "max_size_mb"),
        ({"min_f1": 80}, r"min_f1 must be a fraction in \(0, 1\]"),
        ({"min_f1": 0}, "min_f1"),
        ({"min_f1": float("nan")}, "min_f1"),
        ({"min_f1": "0.8"}, "min_f1"),
    ],
)
def test_budget_validation(kwargs, match):
    with pytest.raises(InputError, match=match):
        Budget(**kwargs)


def test_budget_is_set():
    assert not Budget().is_set
    assert Budget(min_f1=1).is_set and Budget(max_size_mb=3).is_set
    assert Budget(max_latency_ms=0.5).is_set


def test_bad_default_tolerance_is_an_input_error():
    with pytest.raises(InputError, match="default_tolerance"):
        choose(students(), Budget(), TEACHER, default_tolerance=1.5)


def test_card_entry_is_json_ready_and_complete():
    choice = choose([TEACHER, *students()], Budget(max_latency_ms=5), TEACHER)
    entry = card_entry(choice)
    assert set(entry) == {"policy", "reason", "budget", "front", "rejected", "chosen_variant"}
    assert entry["chosen_variant"] == "l2-int8"
    assert entry["policy"] == POLICY_MOST_ACCURATE
    assert entry["budget"] == {
        "max_latency_ms": 5,
        "max_size_mb": None,
        "min_f1": None,
        "f1_floor": pytest.approx(0.645),
    }
    assert entry["rejected"] == choice.rejected and entry["front"] == choice.front
    assert json.loads(json.dumps(entry))["reason"] == choice.reason
