"""The few-shot bench's bookkeeping: per-class sampling, seed means and the acceptance bars."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from modelfab.bench.fewshot import (
    BODY_EPOCHS,
    METHODS,
    SHOTS,
    STUDENT_EMA,
    STUDENT_EPOCHS,
    STUDENT_LAYERS,
    STUDENT_LR,
    Facet,
    StudentSetting,
    consistent_labels,
    markdown,
    merge,
    per_class,
    summarize,
    unlabeled,
)


def test_per_class_takes_n_of_each_class_or_everything():
    y = np.array([0] * 10 + [1] * 3 + [2] * 20)
    idx = per_class(y, 4, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [4, 3, 4]
    assert (np.diff(idx) > 0).all()
    assert (per_class(y, None, np.random.default_rng(0)) == np.arange(len(y))).all()


def test_the_student_distills_over_the_hidden_train_rows_first_then_the_pool():
    train = [f"t{i}" for i in range(6)]
    pool = [f"p{i}" for i in range(4)]
    x = {"train": np.arange(6.0)[:, None], "pool": 10 + np.arange(4.0)[:, None]}
    f = Facet("s", ["a", "b"], {"train": train, "pool": pool}, x, {"train": np.zeros(6, int)})
    texts, feats = unlabeled(f, np.array([1, 4]))
    # the labeled rows 1 and 4 are left out, the others come first, as many as the pool holds
    assert texts == ["t0", "t2", "t3", "t5"]
    assert feats[:, 0].tolist() == [0.0, 2.0, 3.0, 5.0]
    texts, feats = unlabeled(f, np.array([4, 0, 2, 1, 3]))
    assert texts == ["t5", "p0", "p1", "p2"]
    assert feats[:, 0].tolist() == [5.0, 10.0, 11.0, 12.0]
    assert unlabeled(f, np.arange(6))[0] == pool  # every row labeled: the pool alone


def test_a_label_the_other_rows_contradict_is_inconsistent():
    rng = np.random.default_rng(0)
    centres = 5 * np.eye(3, 8)
    y = np.repeat(np.arange(3), 30)
    x = centres[y] + rng.normal(0, 0.5, (len(y), 8))
    flipped = np.array([3, 40, 77])
    noisy = y.copy()
    noisy[flipped] = (noisy[flipped] + 1) % 3
    f = Facet("s", ["a", "b", "c"], {"train": []}, {"train": x}, {"train": noisy})
    consistent = consistent_labels(f, seed=0)
    assert not consistent[flipped].any()
    assert consistent[np.setdiff1d(np.arange(len(y)), flipped)].all()


def test_each_active_learning_round_returns_every_row_picked_so_far():
    from modelfab.bench.fewshot import active_rounds

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = 3 * np.eye(3, 8)[y] + rng.normal(0, 1.0, (len(y), 8))
    texts = [f"t{i}" for i in range(len(y))]
    f = Facet(
        "s", ["a", "b", "c"], {"train": texts}, {"train": x, "test": x}, {"train": y, "test": y}
    )
    start = per_class(y, SHOTS, np.random.default_rng(0))
    (shots1, _, first), (shots2, _, both) = active_rounds(f, start, "uncertainty-diversity", 0)
    assert (shots1, shots2) == (2 * SHOTS, 3 * SHOTS)
    assert len(first) == 3 * SHOTS and len(both) == 6 * SHOTS
    assert not np.isin(both, start).any() and np.isin(first, both).all()


def test_active_draws_average_rounds_over_selection_seeds_100_apart(monkeypatch):
    """Each draw is `active_rounds` with seed + 100 * d; each round's consistency share is that
    round's picks averaged over the draws (fails when every draw reuses one seed, only the first
    draw counts, or a round reads another round's picks)."""
    from modelfab.bench import fewshot

    f = Facet("s", ["a", "b"], {"train": []}, {"train": np.zeros((20, 2))}, {"train": np.zeros(20)})
    consistent = np.arange(20) < 10
    seeds = []

    def rounds(f, start, strategy, seed):
        seeds.append(seed)
        if seed < 100:  # draw 0: consistent picks, then half of them
            return [(16, 0.002, np.array([0, 1])), (24, 0.502, np.array([0, 1, 10, 11]))]
        return [(16, 0.102, np.array([10, 11])), (24, 0.602, np.array([10, 11, 12, 13]))]

    monkeypatch.setattr(fewshot, "active_rounds", rounds)
    out = fewshot.active_draws(f, np.arange(2), "random", 2, consistent, draws=2)
    assert seeds == [2, 102]
    assert out == [(16, [0.002, 0.102], 0.5), (24, [0.502, 0.602], 0.25)]


def test_active_records_hold_the_mean_of_the_draws_and_each_draw(monkeypatch):
    """A record's macro_f1 is the mean of its draws, which it lists; the consistency check runs
    once for both strategies (fails when macro_f1 is one draw's or the best draw's)."""
    from modelfab.bench import fewshot

    calls = []
    monkeypatch.setattr(fewshot, "consistent_labels", lambda f, seed: calls.append(seed) or "c")

    def draws(f, start, strategy, seed, consistent, draws):
        assert consistent == "c"
        base = 0.0 if strategy == "random" else 0.1
        return [(16, [base + 0.2, base + 0.4], 0.5), (24, [base + 0.6, base + 0.8], 0.7)]

    monkeypatch.setattr(fewshot, "active_draws", draws)
    out = fewshot.active_records(None, np.arange(2), seed=3, draws=2)
    assert calls == [3]
    assert [(m, shots) for m, shots, _, _ in out] == [
        ("al-uncertainty", 16),
        ("al-uncertainty", 24),
        ("al-random", 16),
        ("al-random", 24),
    ]
    assert np.allclose([f1 for _, _, f1, _ in out], [0.4, 0.8, 0.3, 0.7])
    assert out[3][3] == {
        "strategy": "random",
        "picks_consistent": 0.7,
        "draws": 2,
        "macro_f1_draws": [0.6, 0.8],
    }
    assert out[0][3]["strategy"] == "balanced"  # the strategy a build's queue uses


class FakeStudent:
    """Stands in for TransformerStudent: records each config and distill set, predicts 0, 1, ..."""

    seen: list = []

    def __init__(self, teacher, config):
        self.seen.append({"config": config})

    def fit(self, data):
        self.seen[-1]["n_texts"] = len(data.texts)
        return self

    def predict_logits(self, texts):
        return np.eye(2)[np.arange(len(texts)) % 2]


class GapAdapter:
    """Logits -50 / +50 on the 2 labeled rows and -gap/2 / +gap/2 (a spread of gap/2) on the
    unlabeled ones."""

    def __init__(self, pool_gap: float = 0.0):
        self.pool_gap = pool_gap

    def logits(self, x):
        out = np.tile([-self.pool_gap / 2, self.pool_gap / 2], (len(x), 1))
        out[:2] = [-50.0, 50.0]
        return out

    def head(self):
        import torch

        return torch.nn.Linear(2, 2)


class Teacher48:
    module = object()
    config = type("C", (), {"max_length": 48})()


@pytest.fixture
def fake_student(monkeypatch):
    from modelfab.distill import transformer

    monkeypatch.setattr(FakeStudent, "seen", [])
    monkeypatch.setattr(transformer, "TransformerStudent", FakeStudent)
    return FakeStudent.seen


def two_class_facet() -> Facet:
    return Facet(
        "s",
        ["a", "b"],
        {"train": [f"t{i}" for i in range(8)], "pool": ["p0", "p1"], "test": ["x", "y"]},
        {"train": np.zeros((8, 2)), "pool": np.zeros((2, 2))},
        {"train": np.array([0, 1] * 4), "test": np.array([0, 1])},
    )


def test_bench_student_is_the_builds_for_3_epochs_at_the_teachers_length_and_a_lower_lr(
    fake_student,
):
    """`student_f1` distills with the build's TransformerStudentConfig except the input length,
    `min_steps` 0 (3 epochs: the build's 700 steps scored lower over the bench; see its
    docstring) and the body learning rate (1e-4). Fails when any of them changes unnoticed."""
    from modelfab.bench.fewshot import student_f1
    from modelfab.distill.transformer import TransformerStudentConfig

    f, two, teacher = two_class_facet(), np.array([0, 1]), Teacher48()
    assert student_f1(f, GapAdapter(), two, teacher, seed=5)[0] == 1.0
    build = TransformerStudentConfig()
    config = fake_student[-1]["config"]
    assert (config.min_steps, config.epochs, config.layers) == (0, build.epochs, STUDENT_LAYERS)
    assert (config.max_length, config.seed, fake_student[-1]["n_texts"]) == (48, 5, 4)
    assert (config.lr, build.lr) == (1e-4, 3e-4)  # the bench's body learning rate, not the build's
    student_f1(f, GapAdapter(), two, teacher, 5, StudentSetting(lr=5e-5))
    config = fake_student[-1]["config"]
    assert config.lr == 5e-5 and config.layers == STUDENT_LAYERS
    student_f1(f, GapAdapter(), two, teacher, 5, StudentSetting(layers=3, epochs=6))
    config = fake_student[-1]["config"]
    assert (config.layers, config.epochs, config.lr) == (3, 6, STUDENT_LR)
    assert config.ema_decay == STUDENT_EMA
    student_f1(f, GapAdapter(), two, teacher, 5, StudentSetting(ema=0.99))
    assert fake_student[-1]["config"].ema_decay == 0.99
    assert fake_student[-1]["config"].body is None  # no body given: the teacher's own layers
    student_f1(f, GapAdapter(), two, teacher, 5, body=Path("b.safetensors"))
    assert fake_student[-1]["config"].body is None  # a flat teacher's student: its own layers
    with_body = StudentSetting(body_epochs=6)
    student_f1(f, GapAdapter(), two, teacher, 5, with_body, Path("b.safetensors"))
    assert fake_student[-1]["config"].body == "b.safetensors"


def test_a_confident_teachers_student_trains_with_the_confident_setting(fake_student):
    """`student_f1` measures how far the adapted teacher's logits spread over the unlabeled
    texts (not the labeled rows) and trains a confident teacher's student with the confident
    setting (its body included), a flat teacher's with the other; fails when the gate reads the
    labeled rows, ignores the spread or mixes the two settings."""
    from modelfab.bench.fewshot import GATED, logit_spread, student_f1

    f, two, teacher, body = two_class_facet(), np.array([0, 1]), Teacher48(), Path("b.st")
    assert logit_spread(np.array([[-1.0, 1.0], [0.0, 0.0]])) == 0.5
    flat = GapAdapter(GATED.spread * 2 * 0.9)  # the pool rows' std is gap / 2
    _, used, spread = student_f1(f, flat, two, teacher, 5, GATED, body)
    assert spread == pytest.approx(GATED.spread * 0.9)
    assert used == replace(GATED, confident=None)
    config = fake_student[-1]["config"]
    assert (config.lr, config.epochs, config.body) == (STUDENT_LR, STUDENT_EPOCHS, None)
    sure = GapAdapter(GATED.spread * 2 * 1.1)
    _, used, spread = student_f1(f, sure, two, teacher, 5, GATED, body)
    assert spread == pytest.approx(GATED.spread * 1.1) and used == GATED.confident
    config = fake_student[-1]["config"]
    assert (config.lr, config.epochs, config.body) == (3e-4, 5, "b.st")
    assert config.ema_decay == STUDENT_EMA and config.layers == STUDENT_LAYERS
    _, used, _ = student_f1(f, sure, two, teacher, 5, StudentSetting())
    assert used == StudentSetting()  # a trial's setting, ungated, trains every student alike


def test_the_gated_setting_is_checked_and_names_both_settings_in_the_run_meta():
    from modelfab.bench.fewshot import GATED
    from modelfab.errors import InputError

    meta = GATED.meta()
    assert (meta["student_lr"], meta["student_body_epochs"]) == (STUDENT_LR, 0)
    assert (meta["student_confident_lr"], meta["student_confident_epochs"]) == (3e-4, 5)
    assert (meta["student_confident_body_epochs"], meta["student_confident_spread"]) == (6, 0.6)
    assert "student_confident_spread" not in StudentSetting().meta()
    config = GATED.body_config(64)  # the run distills the confident setting's body
    assert (config.epochs, config.layers, config.max_length) == (6, STUDENT_LAYERS, 64)
    assert StudentSetting().body_config(64) is None
    with pytest.raises(InputError, match="cannot hold another"):
        StudentSetting(confident=GATED)
    with pytest.raises(InputError, match="one student body"):
        StudentSetting(body_epochs=3, confident=StudentSetting(body_epochs=6))
    with pytest.raises(InputError, match="one student body"):  # a body per layer count
        StudentSetting(body_epochs=6, confident=StudentSetting(layers=3, body_epochs=6))
    one = StudentSetting(body_epochs=6, confident=StudentSetting(lr=3e-4))  # only one body named
    assert one.body_config(64).epochs == 6


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
        rec("al-uncertainty", 0.80, shots=3 * SHOTS, picks_consistent=0.6),
        rec("al-random", 0.78, shots=3 * SHOTS, picks_consistent=0.9),
        rec("al-random", 0.50, shots=2 * SHOTS, picks_consistent=0.1),  # other rounds do not count
        rec("label-issues", None, 1.0, shots="all", flip_recall_top10=0.55),
    ]
    s = summarize(records)["s"]
    assert s["means_at_8"]["teacher"] == {"macro_f1": 0.72, "train_wall_s": 15.0}
    assert s["al_random_24"] == 0.78
    assert s["al_picks_consistent"] == {"al-uncertainty": 0.6, "al-random": 0.9}
    assert s["bars"] == {
        "teacher_f1_ge_setfit": True,  # 0.72 >= 0.71
        "teacher_wall_le_third_of_setfit": True,  # 15 <= 30
        "student_within_1_point_of_teacher": False,  # 0.705 < 0.71
        "active_learning_beats_random": True,
        "flip_recall_top10_ge_0.6": False,
    }
    table = markdown({"s": s})
    assert "| s | " in table and "| 3/5 |" in table and "| 0.60 / 0.90 |" in table


def test_missing_methods_leave_their_bars_undecided():
    s = summarize([rec("teacher", 0.7, 1.0)])["s"]
    assert s["bars"]["teacher_f1_ge_setfit"] is None
    assert s["bars"]["active_learning_beats_random"] is None


def test_merge_replaces_the_rerun_scenarios_and_keeps_the_others():
    a, b = {"scenario": "a"}, {"scenario": "b"}
    first = merge(None, [rec("teacher", 0.5) | a, rec("teacher", 0.6) | b], {"started_at": "t1"})
    second = merge(first, [rec("teacher", 0.9) | b], {"started_at": "t2"})
    assert {r["scenario"]: (r["macro_f1"], r["run"]) for r in second["records"]} == {
        "a": (0.5, "t1"),
        "b": (0.9, "t2"),
    }
    assert second["summary"]["b"]["means_at_8"]["teacher"]["macro_f1"] == 0.9
    assert [m["started_at"] for m in second["meta"]["runs"]] == ["t1", "t2"]
    # Once every record of the first run is replaced, it is no longer listed.
    third = merge(second, [rec("teacher", 0.7) | a], {"started_at": "t3"})
    assert [m["started_at"] for m in third["meta"]["runs"]] == ["t2", "t3"]


def test_merge_replaces_only_the_methods_a_run_measured():
    a = {"scenario": "a"}
    first = merge(None, [rec("head", 0.5) | a, rec("setfit", 0.6) | a], {"started_at": "t1"})
    second = merge(first, [rec("setfit", 0.7) | a], {"started_at": "t2"})
    got = {r["method"]: (r["macro_f1"], r["run"]) for r in second["records"]}
    assert got == {"head": (0.5, "t1"), "setfit": (0.7, "t2")}


def test_merge_keeps_the_label_counts_a_run_did_not_measure():
    """A run without the learning curve replaces the 8-label records and keeps the curve's."""
    a = {"scenario": "a"}
    first = merge(
        None,
        [rec("teacher", 0.5) | a, rec("teacher", 0.7) | a | {"labels_per_class": 64}],
        {"started_at": "t1"},
    )
    second = merge(first, [rec("teacher", 0.6) | a], {"started_at": "t2"})
    got = {r["labels_per_class"]: (r["macro_f1"], r["run"]) for r in second["records"]}
    assert got == {SHOTS: (0.6, "t2"), 64: (0.7, "t1")}


def test_merge_adopts_a_file_written_before_runs_were_tracked():
    old = {
        "meta": {"started_at": "t0", "hardware": {"cpu": "x"}, "command": "make bench-fewshot"},
        "records": [rec("head", 0.5) | {"scenario": "a"}],
    }
    new = merge(old, [rec("head", 0.6) | {"scenario": "b"}], {"started_at": "t1"})
    assert {r["scenario"]: r["run"] for r in new["records"]} == {"a": "t0", "b": "t1"}
    assert new["meta"]["runs"][0] == {
        "started_at": "t0",
        "hardware": {"cpu": "x"},
        "scenarios": ["a"],
    }


def test_the_learning_curve_is_summarized_and_rendered_per_label_count():
    records = [
        rec("teacher", 0.6, 1.0),
        rec("student", 0.55, 1.0),
        rec("teacher", 0.7, 1.0, shots=64),
        rec("teacher", 0.8, 1.0, shots="all"),
        rec("student", 0.75, 1.0, shots="all"),
    ]
    summary = summarize(records)
    curve = summary["s"]["curve"]
    assert curve["8"] == {"teacher": 0.6, "student": 0.55}
    assert curve["64"] == {"teacher": 0.7, "student": None}
    assert curve["all"] == {"teacher": 0.8, "student": 0.75}
    assert "| s | 0.600 / 0.550 |  /  |  /  | 0.700 /  | 0.800 / 0.750 |" in markdown(summary)


@pytest.fixture
def tiny_facet(tiny_teacher_dir, tiny_text_set):
    """(facet, teacher): a tiny teacher and a facet of the tiny text set, its pool the train
    texts (unlabeled: the labels are never read)."""
    from modelfab.bench.fewshot import Facet
    from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder

    teacher = HFTextEncoder(EncoderConfig(path=str(tiny_teacher_dir), max_length=32))
    texts, labels = tiny_text_set
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    test = np.concatenate([np.flatnonzero(y == c)[-5:] for c in range(len(classes))])
    train = np.setdiff1d(np.arange(len(y)), test)
    split = {"train": [texts[i] for i in train], "test": [texts[i] for i in test]}
    split["pool"] = split["train"]  # unlabeled: the labels are never read
    facet = Facet(
        "tiny",
        classes,
        split,
        {k: teacher.encode(v) for k, v in split.items()},
        {"train": y[train], "test": y[test]},
    )
    return facet, teacher


def test_run_facet_measures_every_method_on_a_tiny_facet(tiny_facet, one_thread):
    """The bench's own measuring code, end to end on a tiny teacher: each method gives the
    records the summary reads (a smoke test of the wiring; the figures come from the bench)."""
    from modelfab.bench.fewshot import GATED, run_facet

    facet, teacher = tiny_facet
    methods = ("head", "contrastive", "student", "active", "label-issues")
    records = run_facet(facet, 0, teacher, methods, curve=False, draws=2)
    by_method = {r["method"]: r for r in records}
    assert set(by_method) == {
        "head",
        "contrastive",
        "teacher",
        "student",
        "al-uncertainty",
        "al-random",
        "label-issues",
    }
    assert by_method["teacher"]["strategy"] == "contrastive"
    assert by_method["teacher"]["macro_f1"] > 0.8
    assert by_method["student"]["macro_f1"] > 0.8
    assert by_method["student"]["train_wall_s"] > 0
    assert by_method["student"]["layers"] == STUDENT_LAYERS
    assert by_method["student"]["lr"] == STUDENT_LR == 1e-4
    assert by_method["student"]["epochs"] == STUDENT_EPOCHS == 3
    assert by_method["student"]["body_epochs"] == 0  # no body given
    assert 0 < by_method["student"]["teacher_spread"] < GATED.spread  # a flat tiny teacher
    assert 0 <= by_method["label-issues"]["flip_recall_top10"] <= 1
    assert {r["labels_per_class"] for r in records if r["method"] == "al-random"} == {16, 24}
    for r in records:
        if r["method"] in ("al-random", "al-uncertainty"):
            assert 0 <= r["picks_consistent"] <= 1 and r["draws"] == 2
            assert abs(r["macro_f1"] - np.mean(r["macro_f1_draws"])) < 1e-4
    # curve=False: the teacher and student at 8 labels per class only
    assert [r["labels_per_class"] for r in records if r["method"] in ("teacher", "student")] == [
        SHOTS,
        SHOTS,
    ]


def test_the_environment_picks_facets_methods_curve_and_output(monkeypatch):
    from pathlib import Path

    from modelfab.bench import fewshot

    calls = []
    monkeypatch.setattr(fewshot, "run", lambda *a, **k: calls.append(("run", a, k)) or {})
    monkeypatch.setattr(fewshot, "render", lambda *a, **k: calls.append(("render", a, k)) or {})
    fewshot.main({})
    fewshot.main({"FEWSHOT_METHODS": "student,active", "FEWSHOT_FACETS": "use,field"})
    fewshot.main({"FEWSHOT_METHODS": "student", "FEWSHOT_OUT": "out", "FEWSHOT_CURVE": "0"})
    fewshot.main({"FEWSHOT_RENDER": "1"})
    assert calls == [
        (
            "run",
            (Path("bench-results"), fewshot.FACETS),
            {"curve": True, "student": fewshot.GATED},
        ),
        (
            "run",
            (Path("bench-results/partial"), ("use", "field")),
            {
                "methods": ("student", "active"),
                "curve": True,
                "student": fewshot.GATED,
            },
        ),
        (
            "run",
            (Path("out"), fewshot.FACETS),
            {
                "methods": ("student",),
                "curve": False,
                "student": fewshot.GATED,
            },
        ),
        ("render", (Path("bench-results"),), {}),
    ]


def test_a_curve_only_facet_measures_the_labels_beyond_8_per_class(tiny_facet, one_thread):
    from modelfab.bench.fewshot import CURVE, run_facet

    facet, teacher = tiny_facet
    records = run_facet(facet, 0, teacher, (), curve="only")
    assert [(r["method"], r["labels_per_class"]) for r in records] == [
        ("teacher", 16),
        ("teacher", 32),
        ("teacher", 64),
        ("teacher", "all"),
    ]
    assert CURVE[1:] == (16, 32, 64, None)


def test_a_curve_only_run_measures_the_first_seed_and_the_student_only(monkeypatch, tmp_path):
    """FEWSHOT_CURVE=only must not touch the 8-label records of any seed: it measures the first
    seed, with no method but the student, and the run keeps every other record."""
    import json
    from types import SimpleNamespace

    from modelfab.bench import fewshot

    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fewshot, "import_data", lambda *a, **k: SimpleNamespace(id="d"))
    monkeypatch.setattr(fewshot.paths, "debian_snapshot", lambda: tmp_path / "none.jsonl.gz")
    monkeypatch.setattr(fewshot, "load_teacher", lambda cfg, sample, home: ("t", {}))
    monkeypatch.setattr(fewshot, "load_facet", lambda d, facet, seed, t, c: (facet, seed))
    calls = []

    def run_facet(f, seed, teacher, methods, curve, student, body):
        calls.append((seed, methods, curve))
        return [rec("student", 0.9, shots=16) | {"scenario": "debian-use", "seed": seed}]

    monkeypatch.setattr(fewshot, "run_facet", run_facet)
    monkeypatch.setattr(fewshot, "student_body", lambda *a: (None, {}))
    out = tmp_path / "out"
    out.mkdir()
    kept = [rec(m, 0.5) | {"scenario": "debian-use", "seed": s} for m in METHODS for s in (0, 1)]
    (out / "fewshot.json").write_text(json.dumps(merge(None, kept, {"started_at": "t0"})))
    fewshot.run(out, ("use",), (0, 1, 2), methods=fewshot.METHODS, curve="only")
    assert calls == [(0, ("student",), "only")]
    stored = json.loads((out / "fewshot.json").read_text())["records"]
    assert sorted((r["method"], r["labels_per_class"], r["seed"]) for r in stored) == sorted(
        [(m, SHOTS, s) for m in METHODS for s in (0, 1)] + [("student", 16, 0)]
    )


def test_adopt_merges_a_trials_records_run_by_run(tmp_path):
    """A trial adopted: its student records (and its run) replace the results' own, the
    teacher records the trial also measured stay as they were, and nothing is measured."""
    import json

    from modelfab.bench import fewshot

    main, trial = tmp_path / "main", tmp_path / "trial"
    for d in (main, trial):
        d.mkdir()
    a = {"scenario": "a"}
    old = merge(
        None, [rec("teacher", 0.7, 30.0) | a, rec("student", 0.6) | a], {"started_at": "t0"}
    )
    (main / "fewshot.json").write_text(json.dumps(old))
    new = merge(
        None, [rec("teacher", 0.7, 40.0) | a, rec("student", 0.65) | a], {"started_at": "t1"}
    )
    new = merge(new, [rec("student", 0.8) | {"scenario": "b"}], {"started_at": "t2"})
    (trial / "fewshot.json").write_text(json.dumps(new))
    payload = fewshot.adopt(trial, main, ("student",))
    got = {(r["scenario"], r["method"]): (r["macro_f1"], r["run"]) for r in payload["records"]}
    assert got == {
        ("a", "teacher"): (0.7, "t0"),
        ("a", "student"): (0.65, "t1"),
        ("b", "student"): (0.8, "t2"),
    }
    assert [m["started_at"] for m in payload["meta"]["runs"]] == ["t0", "t1", "t2"]
    assert json.loads((main / "fewshot.json").read_text()) == payload
    assert "| a |" in (main / "fewshot.md").read_text()
    again = fewshot.adopt(trial, main, ("student",))  # adopted twice: one meta entry per run
    assert [m["started_at"] for m in again["meta"]["runs"]] == ["t0", "t1", "t2"]
    assert again["records"] == payload["records"]
    with pytest.raises(fewshot.InputError, match="nothing to adopt"):
        fewshot.adopt(tmp_path / "none", main)
    with pytest.raises(fewshot.InputError, match="holds no records of studnet; nothing adopted"):
        fewshot.adopt(trial, main, ("studnet",))


def test_the_environment_adopts_and_picks_the_curve(monkeypatch):
    from pathlib import Path

    from modelfab.bench import fewshot
    from modelfab.errors import InputError

    calls = []
    monkeypatch.setattr(fewshot, "run", lambda *a, **k: calls.append(("run", a, k)) or {})
    monkeypatch.setattr(fewshot, "adopt", lambda *a: calls.append(("adopt", a)) or {})
    fewshot.main({"FEWSHOT_ADOPT": "trials/x", "FEWSHOT_METHODS": "student"})
    fewshot.main({"FEWSHOT_ADOPT": "trials/x", "FEWSHOT_OUT": "o"})
    fewshot.main({"FEWSHOT_CURVE": "only", "FEWSHOT_FACETS": "use"})
    assert calls == [
        ("adopt", (Path("trials/x"), Path("bench-results"), ("student",))),
        ("adopt", (Path("trials/x"), Path("o"), None)),
        (
            "run",
            (Path("bench-results"), ("use",)),
            {"curve": "only", "student": fewshot.GATED},
        ),
    ]
    with pytest.raises(InputError, match="FEWSHOT_CURVE must be 0, 1 or only; got 'yes'"):
        fewshot.main({"FEWSHOT_CURVE": "yes"})


def test_the_bench_entry_point_reports_a_bad_setting_without_a_traceback(monkeypatch, capsys):
    from modelfab.bench import fewshot

    monkeypatch.setattr(fewshot, "run", lambda *a, **k: {"summary": {}})
    assert fewshot.cli({"FEWSHOT_CURVE": "yes"}) == 2
    assert capsys.readouterr().err == "error: FEWSHOT_CURVE must be 0, 1 or only; got 'yes'\n"
    assert fewshot.cli({"FEWSHOT_FACETS": "use"}) == 0
    assert "|" in capsys.readouterr().out


def test_the_environment_sets_a_trial_students_learning_rate(monkeypatch):
    from pathlib import Path

    from modelfab.bench import fewshot
    from modelfab.errors import InputError

    calls = []
    monkeypatch.setattr(fewshot, "run", lambda *a, **k: calls.append((a, k)) or {})
    fewshot.main({"FEWSHOT_METHODS": "student", "FEWSHOT_STUDENT_LR": "1e-4"})
    fewshot.main({"FEWSHOT_STUDENT_LR": "5e-5"})
    assert calls == [
        (
            (Path("bench-results/partial"), fewshot.FACETS),
            {
                "methods": ("student",),
                "curve": True,
                "student": StudentSetting(lr=1e-4),
            },
        ),
        (
            (Path("bench-results"), fewshot.FACETS),
            {"curve": True, "student": StudentSetting(lr=5e-5)},
        ),
    ]
    for bad in ("fast", "0", "-1e-4", "nan", "inf"):
        with pytest.raises(InputError, match="FEWSHOT_STUDENT_LR must be a positive number"):
            fewshot.main({"FEWSHOT_STUDENT_LR": bad})
    assert len(calls) == 2


def test_the_environment_sets_a_trial_students_layers(monkeypatch):
    from pathlib import Path

    from modelfab.bench import fewshot
    from modelfab.errors import InputError

    calls = []
    monkeypatch.setattr(fewshot, "run", lambda *a, **k: calls.append((a, k)) or {})
    fewshot.main({"FEWSHOT_METHODS": "student", "FEWSHOT_STUDENT_LAYERS": "3"})
    assert calls == [
        (
            (Path("bench-results/partial"), fewshot.FACETS),
            {"methods": ("student",), "curve": True, "student": StudentSetting(layers=3)},
        )
    ]
    for bad in ("three", "0", "-2", "2.5", ""):
        with pytest.raises(InputError, match="FEWSHOT_STUDENT_LAYERS must be a positive whole"):
            fewshot.main({"FEWSHOT_STUDENT_LAYERS": bad})
    assert len(calls) == 1


def test_the_environment_sets_a_trial_students_epochs(monkeypatch):
    from pathlib import Path

    from modelfab.bench import fewshot
    from modelfab.errors import InputError

    calls = []
    monkeypatch.setattr(fewshot, "run", lambda *a, **k: calls.append((a, k)) or {})
    fewshot.main({"FEWSHOT_STUDENT_EPOCHS": "6", "FEWSHOT_STUDENT_LR": "3e-4"})
    assert calls == [
        (
            (Path("bench-results"), fewshot.FACETS),
            {"curve": True, "student": StudentSetting(lr=3e-4, epochs=6)},
        )
    ]
    for bad in ("six", "0", "-1", "1.5", ""):
        with pytest.raises(InputError, match="FEWSHOT_STUDENT_EPOCHS must be a positive whole"):
            fewshot.main({"FEWSHOT_STUDENT_EPOCHS": bad})
    assert len(calls) == 1


def test_the_environment_sets_a_trial_students_weight_average(monkeypatch):
    from modelfab.bench import fewshot
    from modelfab.errors import InputError

    calls = []
    monkeypatch.setattr(fewshot, "run", lambda *a, **k: calls.append(k["student"]) or {})
    fewshot.main({"FEWSHOT_STUDENT_EMA": "0.995"})
    fewshot.main({"FEWSHOT_STUDENT_EMA": "0"})
    assert calls == [StudentSetting(ema=0.995), StudentSetting(ema=0.0)]
    for bad in ("high", "1", "1.5", "-0.1", "nan", ""):
        with pytest.raises(InputError, match="FEWSHOT_STUDENT_EMA must be a number in"):
            fewshot.main({"FEWSHOT_STUDENT_EMA": bad})
    assert len(calls) == 2


def test_run_loads_the_teacher_in_fp32_and_writes_each_facet(monkeypatch, tmp_path):
    """The bench pins the teacher's precision: "auto" measures fp32 against bf16 on the CPU at
    hand, and the frozen-feature figures would move with its choice."""
    import json
    from types import SimpleNamespace

    from modelfab.bench import fewshot

    loaded = []
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fewshot, "import_data", lambda *a, **k: SimpleNamespace(id="d"))
    monkeypatch.setattr(fewshot.paths, "debian_snapshot", lambda: tmp_path / "none.jsonl.gz")
    monkeypatch.setattr(
        fewshot, "load_teacher", lambda cfg, sample, home: loaded.append(cfg) or ("t", {})
    )
    monkeypatch.setattr(fewshot, "load_facet", lambda d, facet, seed, t, c: (facet, seed))
    record = {"labels_per_class": SHOTS, "method": "head", "macro_f1": 0.5, "train_wall_s": 1.0}

    lrs, bodies = [], []

    def run_facet(f, seed, teacher, methods, curve, student, body):
        lrs.append(student)
        bodies.append(body)
        return [{**record, "scenario": f"debian-{f[0]}", "seed": seed}]

    def student_body(teacher, dataset_id, methods, student, home):
        if "student" not in methods:
            return None, {}
        return Path("b.safetensors"), {"student_body": "k", "student_body_reused": False}

    monkeypatch.setattr(fewshot, "run_facet", run_facet)
    monkeypatch.setattr(fewshot, "student_body", student_body)
    out = tmp_path / "out"
    setting = StudentSetting(1e-4, 3, 5, 0.99, 2)
    fewshot.run(out, ("use",), (0, 1), ("head", "student"), False, setting)
    assert [cfg.precision for cfg in loaded] == ["fp32"]
    assert lrs == [setting] * 2
    assert bodies == [Path("b.safetensors")] * 2
    payload = json.loads((tmp_path / "out" / "fewshot.json").read_text())
    runs = payload["meta"]["runs"]
    assert [
        (m["student_lr"], m["student_layers"], m["student_epochs"], m["student_ema"]) for m in runs
    ] == [(1e-4, 3, 5, 0.99)]
    assert [(m["student_body_epochs"], m["student_body"]) for m in runs] == [(2, "k")]
    stored = payload["records"]
    assert sorted((r["scenario"], r["seed"]) for r in stored) == [
        ("debian-use", 0),
        ("debian-use", 1),
    ]
    fewshot.run(out, ("use",), (0,), methods=("head",), curve=False)  # no student, no lr
    (only,) = json.loads((out / "fewshot.json").read_text())["meta"]["runs"]
    assert only["methods"] == ["head"] and "student_lr" not in only
    assert "student_layers" not in only and "student_body" not in only
    assert bodies[-1] is None


def test_a_facet_holds_a_pool_of_9000_texts_and_the_seed_splits_it(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from modelfab.bench import fewshot

    specs = []
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path))
    monkeypatch.setattr(fewshot, "DatasetStore", lambda home: SimpleNamespace(load=lambda d: "df"))
    monkeypatch.setattr(
        fewshot,
        "materialize",
        lambda spec, df: specs.append(spec) or SimpleNamespace(classes=["a"]),
    )
    monkeypatch.setattr(fewshot, "split_features", lambda data, t, c, name: ({}, {}, {}))
    f = fewshot.load_facet("d", "use", 2, teacher=None, cache=None)
    assert f.name == "debian-use" and f.classes == ["a"]
    assert [(s.unlabeled_pool, s.seed, s.name) for s in specs] == [(9000, 2, "debian-use")]


def test_the_environment_sets_a_trial_students_body(monkeypatch):
    from modelfab.bench import fewshot
    from modelfab.errors import InputError

    calls = []
    monkeypatch.setattr(fewshot, "run", lambda *a, **k: calls.append(k["student"]) or {})
    fewshot.main({})
    fewshot.main({"FEWSHOT_STUDENT_BODY": "0"})
    fewshot.main({"FEWSHOT_STUDENT_BODY": "6"})
    assert BODY_EPOCHS == 0  # the body trial lost on interface:: (`student_f1`)
    assert [c.body_epochs for c in calls] == [0, 0, 6]
    for bad in ("-1", "x", "1.5", ""):
        with pytest.raises(InputError, match="FEWSHOT_STUDENT_BODY must be a whole number >= 0"):
            fewshot.main({"FEWSHOT_STUDENT_BODY": bad})
    assert len(calls) == 3


def test_the_body_corpus_leaves_out_every_source_with_a_bench_facet_tag():
    """A package of a source that has a package tagged in any bench facet never enters the body's
    corpus, tagged or not (its text may be a near-copy of a test text); other facets' tags and
    untagged packages of other sources do."""
    import pandas as pd

    from modelfab.bench.fewshot import body_corpus

    frame = pd.DataFrame(
        {
            "package": ["a1", "a2", "b1", "c1", "d1", "e1", "f1", "g1"],
            "source": ["a", "a", "b", "c", "d", "e", "f", "g"],
            "summary": ["A one", "A two", "B one", "C one", "D one", " ", "F", "G"],
            "description": ["about a", "", "about b", None, "about d", "only text", "", ""],
            "tags": [
                ["use::editing"],
                None,  # untagged, but its source "a" has a use:: package
                ["game::puzzle", "field::biology"],
                ["game::puzzle"],
                [],
                None,
                "game::toys, interface::x11",  # tags as text
                np.array(["role::program", " works-with::text"]),  # as an array
            ],
        }
    )
    assert body_corpus(frame) == ["C one", "D one\nabout d", "only text"]


def test_the_students_body_is_distilled_once_over_the_corpus_for_the_run(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from modelfab.bench import fewshot
    from modelfab.distill.body import Body, BodyConfig

    asked = []

    class Store:
        def __init__(self, root):
            self.root = root

        def get(self, teacher, texts, config):
            asked.append((self.root, texts, config))
            return Body(tmp_path / "k.safetensors", "k", {"texts": 2, "wall_s": 9.5})

    monkeypatch.setattr(fewshot, "BodyStore", Store)
    monkeypatch.setattr(fewshot, "DatasetStore", lambda home: SimpleNamespace(load=lambda d: d))
    monkeypatch.setattr(fewshot, "body_corpus", lambda frame: [f"text of {frame}"])
    teacher = SimpleNamespace(config=SimpleNamespace(max_length=48))
    with_body = StudentSetting(body_epochs=6)
    path, meta = fewshot.student_body(teacher, "d", ("head", "student"), with_body, tmp_path)
    assert path == tmp_path / "k.safetensors"
    assert asked == [
        (
            tmp_path / "cache" / "bodies",
            ["text of d"],
            BodyConfig(layers=STUDENT_LAYERS, max_length=48, epochs=6),
        )
    ]
    assert meta == {
        "student_body": "k",
        "student_body_texts": 2,
        "student_body_wall_s": 9.5,
        "student_body_reused": False,
    }
    assert fewshot.student_body(teacher, "d", ("head",), with_body, tmp_path) == (None, {})
    no_body = StudentSetting(body_epochs=0)  # the bench's default (`BODY_EPOCHS`)
    assert fewshot.student_body(teacher, "d", ("student",), no_body, tmp_path) == (None, {})
    assert len(asked) == 1
