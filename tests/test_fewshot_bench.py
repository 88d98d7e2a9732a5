"""The few-shot bench's bookkeeping: per-class sampling, seed means and the acceptance bars."""

from __future__ import annotations

import numpy as np

from modelfab.bench.fewshot import SHOTS, markdown, per_class, summarize


def test_per_class_takes_n_of_each_class_or_everything():
    y = np.array([0] * 10 + [1] * 3 + [2] * 20)
    idx = per_class(y, 4, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [4, 3, 4]
    assert (np.diff(idx) > 0).all()
    assert (per_class(y, None, np.random.default_rng(0)) == np.arange(len(y))).all()


def rec(method, f1, wall=None, shots=SHOTS, seed=0, **extra):
    return {
        "scenario": "s",
        "seed": seed,
        "labels_per_class": shots,
        "method": method,
        "macro_f1": f1,
        "train_wall_s": wall,
        **extra,
    }


def test_summary_means_seeds_and_checks_each_bar():
    records = [
        rec("teacher", 0.70, 10.0, seed=0),
        rec("teacher", 0.74, 20.0, seed=1),
        rec("setfit", 0.71, 90.0, seed=0),
        rec("setfit", 0.71, 90.0, seed=1),
        rec("student", 0.705, 5.0),
        rec("al-uncertainty", 0.80, shots=3 * SHOTS),
        rec("al-random", 0.78, shots=3 * SHOTS),
        rec("al-random", 0.50, shots=2 * SHOTS),  # other rounds do not count
        rec("label-issues", None, 1.0, shots="all", flip_recall_top10=0.55),
    ]
    s = summarize(records)["s"]
    assert s["means_at_8"]["teacher"] == {"macro_f1": 0.72, "train_wall_s": 15.0}
    assert s["al_random_24"] == 0.78
    assert s["bars"] == {
        "teacher_f1_ge_setfit": True,  # 0.72 >= 0.71
        "teacher_wall_le_third_of_setfit": True,  # 15 <= 30
        "student_within_1_point_of_teacher": False,  # 0.705 < 0.71
        "active_learning_beats_random": True,
        "flip_recall_top10_ge_0.6": False,
    }
    table = markdown({"s": s})
    assert "| s | " in table and "| 3/5 |" in table


def test_missing_methods_leave_their_bars_undecided():
    s = summarize([rec("teacher", 0.7, 1.0)])["s"]
    assert s["bars"]["teacher_f1_ge_setfit"] is None
    assert s["bars"]["active_learning_beats_random"] is None
