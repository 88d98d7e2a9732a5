"""Calibrated teacher labels, label-quality ranking and active-learning selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from modelfab.errors import InputError
from modelfab.labels import active
from modelfab.labels.autolabel import (
    check_table,
    human_labels,
    pool_targets,
    summary,
    teacher_labels,
)
from modelfab.labels.calibrate import (
    Calibration,
    class_thresholds,
    expected_calibration_error,
    fit_temperature,
    nll,
)
from modelfab.labels.quality import CS, flip_recall, label_issues, out_of_sample_probs


def overconfident(n: int = 3000, c: int = 4, scale: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(z); the model reports z * scale (too sure of itself)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, c))
    y = np.array([rng.choice(c, p=p) for p in softmax(z, axis=1)])
    return z * scale, y


def blobs(n_per_class: int = 50, c: int = 4, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (c, dim))
    y = np.repeat(np.arange(c), n_per_class)
    return centres[y] + rng.normal(0, 1, (len(y), dim)), y


# --------------------------------------------------------------------------- calibration


def test_temperature_scaling_recovers_the_overconfidence_and_keeps_predictions():
    logits, y = overconfident()
    t = fit_temperature(logits, y)
    assert 2.4 < t < 3.6
    assert nll(logits, y, t) < nll(logits, y) - 0.1
    cal = Calibration.fit(logits, y)
    assert cal.ece_after < cal.ece_before / 2
    assert (cal.probs(logits).argmax(1) == logits.argmax(1)).all()
    assert fit_temperature(logits / 9, y) < 1  # under-confident: T below 1 sharpens it


def test_class_threshold_is_the_lowest_confidence_that_keeps_the_target_precision():
    # Class 0 predicted five times: confidences 0.95 .. 0.6, the two least confident wrong.
    conf = np.array([0.95, 0.9, 0.85, 0.7, 0.6, 0.9])
    pred = np.array([0, 0, 0, 0, 0, 1])
    y = np.array([0, 0, 0, 1, 1, 1])
    probs = np.zeros((6, 2))
    probs[np.arange(6), pred] = conf
    probs[np.arange(6), 1 - pred] = 1 - conf
    assert class_thresholds(probs, y, 1.0)[0] == pytest.approx(0.85)
    assert class_thresholds(probs, y, 0.6)[0] == pytest.approx(0.6)
    # Class 1 has one prediction, below min_support: never accepted automatically.
    assert np.isinf(class_thresholds(probs, y, 0.6)[1])
    with pytest.raises(InputError, match="precision"):
        class_thresholds(probs, y, 0.0)


def test_calibration_errors_and_ece_bounds():
    with pytest.raises(InputError, match="logits"):
        fit_temperature(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(InputError, match="class indices"):
        fit_temperature(np.zeros((2, 2)), np.array([0, 2]))
    perfect = np.eye(3)[[0, 1, 2, 0]]
    assert expected_calibration_error(perfect, np.array([0, 1, 2, 0])) == 0.0
    assert expected_calibration_error(perfect, np.array([1, 2, 0, 1])) == 1.0


# --------------------------------------------------------------------------- auto-labels


def calibration(thresholds) -> Calibration:
    return Calibration(1.0, np.asarray(thresholds, dtype=float), 0.9, 0.0, 0.0)


def test_teacher_labels_carry_provenance_confidence_and_acceptance():
    logits = np.log(np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]]))
    table = teacher_labels(
        [10, 11, 12, 13], list("abcd"), logits, ["x", "y"], calibration([0.8, 0.7])
    )
    assert table["label"].tolist() == ["x", "x", "y", "y"]
    assert table["confidence"].round(2).tolist() == [0.9, 0.6, 0.8, 0.55]
    assert table["accepted"].tolist() == [True, False, True, False]
    assert set(table["provenance"]) == {"teacher"}
    people = human_labels([1], ["e"], ["y"])
    both = check_table(pd.concat([people, table]))
    assert summary(both) == {
        "rows": 5,
        "by_provenance": {"teacher": 4, "human": 1},
        "teacher_accepted": 2,
        "teacher_accept_rate": 0.5,
        "teacher_mean_confidence": pytest.approx((0.9 + 0.6 + 0.8 + 0.55) / 4),
    }
    with pytest.raises(InputError, match="provenance"):
        check_table(people.assign(provenance="oracle"))
    with pytest.raises(InputError, match="confidence"):
        check_table(people.assign(confidence=1.5))


def test_pool_targets_soft_keeps_all_hard_keeps_only_accepted_labels():
    logits = np.log(np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]))
    table = teacher_labels([0, 1, 2], list("abc"), logits, ["x", "y"], calibration([0.8, 0.7]))
    soft = pool_targets(logits, table, ["x", "y"], "soft")
    assert soft.keep.all() and (soft.hard == -1).all()
    np.testing.assert_array_equal(soft.logits, logits)
    hard = pool_targets(logits, table, ["x", "y"], "hard")
    assert hard.keep.tolist() == [True, False, True]
    assert hard.hard.tolist() == [0, 0, 1]
    assert (hard.logits.argmax(1) == hard.hard).all()
    with pytest.raises(InputError, match="soft or hard"):
        pool_targets(logits, table, ["x", "y"], "fuzzy")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- label quality


def test_flipped_labels_rank_among_the_worst():
    x, y = blobs()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), len(y) // 10, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 4, len(flipped))) % 4
    ranked = label_issues(x, noisy, ["a", "b", "c", "d"])
    assert flip_recall(ranked, flipped) >= 0.8
    flagged = set(ranked.loc[ranked["is_issue"], "index"])
    assert len(flagged & set(flipped)) >= 0.8 * len(flipped)
    top = ranked.iloc[0]
    assert top["given"] != top["suggested"]
    assert ranked["quality"].is_monotonic_increasing
    # Clean labels: nothing ranks as suspect as a flipped one did.
    clean = label_issues(x, y, ["a", "b", "c", "d"])
    assert clean["quality"].min() > ranked["quality"].quantile(0.05)


def test_label_quality_regularizes_by_out_of_sample_log_loss():
    """The probabilities come from the C of CS with the lowest out-of-sample log loss, so a model
    that memorizes wrong labels is not the one that judges them."""
    from sklearn.metrics import log_loss

    x, y = blobs(n_per_class=30, dim=64, seed=3)
    rng = np.random.default_rng(3)
    flipped = rng.choice(len(y), len(y) // 5, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 4, len(flipped))) % 4
    chosen = log_loss(noisy, out_of_sample_probs(x, noisy, 4))
    each = {c: log_loss(noisy, out_of_sample_probs(x, noisy, 4, cs=(c,))) for c in CS}
    assert chosen == pytest.approx(min(each.values()))
    assert len(set(np.round(list(each.values()), 6))) > 1  # the choice matters here
    with pytest.raises(InputError, match="regularization"):
        out_of_sample_probs(x, noisy, 4, cs=())


def test_label_quality_refuses_a_class_with_one_example():
    x, y = blobs(n_per_class=5)
    single = y.copy()
    single[0] = 4  # class "e" has one labeled example
    with pytest.raises(InputError, match="at least 2"):
        label_issues(x, single, ["a", "b", "c", "d", "e"])


# --------------------------------------------------------------------------- active learning


def pool(seed: int = 0):
    """Three tight groups of 10 near-duplicates the teacher is unsure of, plus 200 confident
    rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (3, 8))
    unsure = np.repeat(centres, 10, axis=0) + rng.normal(0, 0.05, (30, 8))
    sure = rng.normal(0, 5, (200, 8))
    x = np.vstack([unsure, sure])
    probs = np.vstack(
        [
            np.tile([0.5, 0.5, 0.0], (10, 1)),  # group 0: margin 0, the most uncertain
            np.tile([0.55, 0.45, 0.0], (10, 1)),
            np.tile([0.6, 0.4, 0.0], (10, 1)),
            np.tile([0.98, 0.01, 0.01], (200, 1)),
        ]
    )
    return x, probs


def test_uncertainty_picks_the_smallest_margins():
    x, probs = pool()
    picks = active.select(probs, x, 5, "uncertainty")
    assert len(set(picks)) == 5 and (picks < 10).all()


def test_uncertainty_diversity_spreads_picks_over_distinct_uncertain_groups():
    x, probs = pool()
    picks = active.select(probs, x, 3, "uncertainty-diversity")
    assert sorted(p // 10 for p in picks) == [0, 1, 2]  # one per group, none confident
    assert (active.select(probs, x, 3, "uncertainty") < 10).all()  # all from group 0


def skewed_pool():
    """200 rows predicted class 0, all more uncertain than any other row; 40 predicted class 1
    and 40 class 2, confident; features make each class one blob."""
    rng = np.random.default_rng(0)
    n0, n1, n2 = 200, 40, 40
    probs = np.vstack(
        [
            np.column_stack([np.full(n0, 0.5), np.full(n0, 0.3), np.full(n0, 0.2)])
            + rng.uniform(0, 0.05, (n0, 1)) * [1, -1, 0],
            np.tile([0.1, 0.8, 0.1], (n1, 1)) + rng.uniform(0, 0.05, (n1, 1)) * [1, -1, 0],
            np.tile([0.05, 0.05, 0.9], (n2, 1)) + rng.uniform(0, 0.05, (n2, 1)) * [0, 1, -1],
        ]
    )
    x = np.vstack([rng.normal(c, 0.3, (n, 4)) for c, n in ((0, n0), (3, n1), (-3, n2))])
    return x, probs


def test_balanced_gives_each_predicted_class_its_share_of_uncertain_picks():
    x, probs = skewed_pool()
    pred = probs.argmax(1)
    picks = active.select(probs, x, 6, "balanced")
    assert len(set(picks)) == 6 and np.bincount(pred[picks], minlength=3).tolist() == [2, 2, 2]
    unc = -active.margins(probs)
    for c in (1, 2):  # each share comes from the most uncertain rows predicted as its class
        rows = np.flatnonzero(pred == c)
        top = set(rows[np.argsort(-unc[rows])[:20]])
        assert set(picks[pred[picks] == c]) <= top
    # without balancing, every pick is one of the uncertain class-0 rows
    assert (pred[active.select(probs, x, 6, "uncertainty-diversity")] == 0).all()
    assert active.DEFAULT_STRATEGY == "balanced"


def test_balanced_fills_a_small_class_share_with_the_most_uncertain_rows_left():
    x, probs = skewed_pool()
    probs, x = probs[:201], x[:201]  # one row predicted class 1, none class 2
    pred = probs.argmax(1)
    picks = active.select(probs, x, 9, "balanced")  # shares 3, 3, 3
    assert len(set(picks)) == 9 and 200 in picks
    assert np.bincount(pred[picks], minlength=3).tolist() == [8, 1, 0]


def test_balanced_gives_the_remainder_of_k_to_classes_drawn_by_the_seed():
    x, probs = skewed_pool()
    pred = probs.argmax(1)
    doubled = set()
    for seed in range(10):  # 4 picks over 3 classes: shares 2, 1, 1
        counts = np.bincount(pred[active.select(probs, x, 4, "balanced", seed=seed)], minlength=3)
        assert sorted(counts.tolist()) == [1, 1, 2]
        doubled.add(int(counts.argmax()))
    assert len(doubled) > 1  # not always the most uncertain class, as a fill would give


def test_random_and_diversity_and_edge_cases():
    x, probs = pool()
    a = active.select(probs, x, 20, "random", seed=1)
    assert (a == active.select(probs, x, 20, "random", seed=1)).all()
    assert not (a == active.select(probs, x, 20, "random", seed=2)).all()
    d = active.select(probs, x, 5, "diversity")
    assert len(set(d)) == 5
    assert (active.select(probs, x, 1000) == np.arange(len(x))).all()
    with pytest.raises(InputError, match="strategy"):
        active.select(probs, x, 3, "loudest")
    with pytest.raises(InputError, match=">= 1"):
        active.select(probs, x, 0)
    with pytest.raises(InputError, match="feature rows"):
        active.select(probs, x[:5], 3)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_queue_round_trip_and_answers_become_labels(tmp_path, suffix):
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]])
    queue = active.queue_frame(
        np.array([7, 8, 9]), ["a", "b", "c"], probs, ["x", "y"], np.array([1, 2])
    )
    assert queue["row_id"].tolist() == [8, 9] and queue["suggested"].tolist() == ["y", "x"]
    path = active.write_queue(queue, tmp_path / f"queue{suffix}")
    filled = queue.assign(label=["y", ""])  # the second row left unanswered
    active.write_queue(filled, path)
    answers = active.read_answers(path, classes=["x", "y"])
    assert answers.to_dict(orient="list") == {"row_id": [8], "label": ["y"]}
    frame = pd.DataFrame({"section": [None] * 10, "text": list("abcdefghij")})
    updated = active.apply_answers(frame, "section", answers)
    assert updated.loc[8, "section"] == "y" and updated["section"].isna().sum() == 9
    assert frame["section"].isna().all()  # the stored version is never modified


def test_answers_errors_name_the_problem(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"row_id": 1, "label": "z"}\n')
    with pytest.raises(InputError, match="row_id 1 has label 'z'"):
        active.read_answers(path, classes=["x", "y"])
    path.write_text('{"row_id": 1, "label": "x"}\n{"row_id": 1, "label": "y"}\n')
    with pytest.raises(InputError, match="answered twice"):
        active.read_answers(path)
    path.write_text('{"id": 1, "label": "x"}\n')
    with pytest.raises(InputError, match="missing column"):
        active.read_answers(path)
    with pytest.raises(InputError, match="does not exist"):
        active.read_answers(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="not a row"):
        active.apply_answers(
            pd.DataFrame({"section": [None]}),
            "section",
            pd.DataFrame({"row_id": [3], "label": ["x"]}),
        )
    with pytest.raises(InputError, match=".csv or .jsonl"):
        active.write_queue(pd.DataFrame({"row_id": [1]}), tmp_path / "q.txt")
