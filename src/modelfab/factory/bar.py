"""The students issue's bar for one scenario, and in words which part missed and by how much.

The bar (bench/suite.acceptance): the chosen student within 1 macro-F1 point of the teacher
and >= 10x faster than the PyTorch fp32 teacher and >= 3x faster than its int8 ONNX export at
batch 1; the fastest student >= 50x faster than the fp32 teacher within 3 points.
"""

from __future__ import annotations

from typing import Any


def _x(value: Any) -> str:
    return "not measured" if value is None else f"{value:.1f}x"


def student_bar(records: list[dict]) -> dict:
    """acceptance() of the build's records plus `misses`: one sentence per missed part."""
    from modelfab.bench.suite import acceptance

    if not any(r.get("latency_b1_p50_ms") for r in records):
        return {"all_bars": False, "misses": ["not benchmarked: the bar needs latencies"]}
    out = acceptance(records)
    misses = []
    if not out["bar_chosen_f1_within_1_point"]:
        misses.append(
            f"chosen {out['chosen']} is {-out['chosen_f1_delta_points']:.1f} macro-F1 points "
            "below the teacher (bar: within 1)"
        )
    if not out["bar_chosen_10x_teacher_fp32"]:
        misses.append(
            f"chosen is {_x(out['chosen_speedup_vs_teacher_fp32'])} faster than the fp32 "
            "teacher (bar: 10x)"
        )
    if not out["bar_chosen_3x_teacher_int8"]:
        misses.append(
            f"chosen is {_x(out['chosen_speedup_vs_teacher_int8'])} faster than the int8 "
            "teacher (bar: 3x)"
        )
    if not out["bar_fastest_50x_within_3_points"]:
        misses.append(
            f"fastest {out['fastest']} is {_x(out['fastest_speedup_vs_teacher_fp32'])} faster "
            f"than the fp32 teacher at {out['fastest_f1_delta_points']:+.1f} points "
            "(bar: 50x within 3 points)"
        )
    out["misses"] = misses
    return out
