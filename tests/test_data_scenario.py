"""Scenario specs and materialize(): labels, filters, splits, few-shot and unlabeled pool."""

from __future__ import annotations

import pandas as pd
import pytest

from modelfab import paths
from modelfab.data.connectors import load_table
from modelfab.data.quality import quality_report
from modelfab.data.scenario import ScenarioSpec, materialize
from modelfab.errors import InputError

DEBIAN = paths.debian_snapshot()


def frame(n_per_class: int = 30, classes: tuple[str, ...] = ("games", "libs", "net")):
    """Packages in groups of 3 binaries per source, several classes, distinct texts."""
    rows = []
    for c in classes:
        for i in range(n_per_class):
            rows.append(
                {
                    "package": f"{c}-{i}",
                    "summary": f"{c} package number {i}",
                    "description": f"long text {i} about {c}",
                    "section": c,
                    "source": f"{c}-src-{i // 3}",
                    "tags": [f"interface::{'x11' if i % 2 else 'text'}", "role::program"],
                }
            )
    return pd.DataFrame(rows)


def spec(**kw) -> ScenarioSpec:
    base = {"name": "t", "dataset": "d", "text_fields": ["summary", "description"]}
    if "derived_label" not in kw:
        base["label_field"] = "section"
    return ScenarioSpec.model_validate({**base, **kw})


def all_rows(data):
    return pd.concat([data.train, data.val, data.test])


def test_text_label_and_columns():
    data = materialize(spec(max_text_chars=20), frame())
    assert data.classes == ["games", "libs", "net"]
    for split in (data.train, data.val, data.test):
        assert list(split.columns) == ["text", "label", "group", "row_id"]
    row = all_rows(data).sort_values("row_id").iloc[0]
    assert row["text"] == "games package number 0\nlong text 0 about games"[:20]
    assert row["label"] == "games"
    assert sorted(all_rows(data)["row_id"]) == list(range(90))


def test_facet_label_keeps_only_single_tag_rows():
    df = pd.DataFrame(
        {
            "summary": [f"s{i}" for i in range(8)],
            "tags": [
                ["interface::x11", "role::program"],
                ["interface::x11"],
                ["interface::text", "interface::x11"],  # two interface tags: dropped
                ["role::program"],  # none: dropped
                ["interface::text"],
                ["interface::text"],
                ["interface::x11"],
                ["interface::text"],
            ],
        }
    )
    data = materialize(
        spec(
            text_fields=["summary"], derived_label={"facet": "interface"}, split={"val_frac": 0.01}
        ),
        df,
    )
    got = all_rows(data).set_index("row_id")["label"].sort_index()
    assert got.to_dict() == {0: "x11", 1: "x11", 4: "text", 5: "text", 6: "x11", 7: "text"}


def test_one_vs_rest_label_is_the_class_or_rest_for_values_and_tag_lists():
    data = materialize(
        spec(derived_label={"kind": "one-vs-rest", "field": "section", "positive": "games"}),
        frame(),
    )
    assert data.classes == ["games", "rest"]
    rows = all_rows(data).set_index("row_id")["label"]
    assert (rows[rows.index < 30] == "games").all() and (rows[rows.index >= 30] == "rest").all()
    df = pd.DataFrame(
        {
            "summary": [f"s{i}" for i in range(6)],
            "tags": [["a", "x11"], ["x11"], ["b"], "x11, c", "c", None],
        }
    )
    label = {"kind": "one-vs-rest", "field": "tags", "positive": "x11", "rest": "other"}
    data = materialize(
        spec(text_fields=["summary"], derived_label=label, split={"val_frac": 0.01}), df
    )
    got = all_rows(data).set_index("row_id")["label"].sort_index().to_dict()
    assert got == {0: "x11", 1: "x11", 2: "other", 3: "x11", 4: "other"}  # row 5: no tags
    with pytest.raises(ValueError, match="must differ"):
        spec(derived_label={"kind": "one-vs-rest", "field": "s", "positive": "rest"})


def test_group_split_keeps_groups_whole_and_is_deterministic():
    s = spec(split={"kind": "group", "group_field": "source"}, seed=3)
    data = materialize(s, frame())
    splits = [set(data.train["group"]), set(data.val["group"]), set(data.test["group"])]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert all(splits)
    assert len(data.test) == pytest.approx(0.2 * 90, abs=4)
    again = materialize(s, frame())
    pd.testing.assert_frame_equal(data.test, again.test)
    other = materialize(spec(split={"kind": "group", "group_field": "source"}, seed=4), frame())
    assert set(other.test["row_id"]) != set(data.test["row_id"])


def test_stratified_split_fractions_per_class():
    data = materialize(spec(), frame(n_per_class=50))
    assert data.test["label"].value_counts().to_dict() == {"games": 10, "libs": 10, "net": 10}
    assert data.val["label"].value_counts().to_dict() == {"games": 5, "libs": 5, "net": 5}


def test_few_shot_and_unlabeled_pool_exclude_held_out_groups():
    s = spec(
        split={"kind": "group", "group_field": "source"},
        labels_per_class=4,
        unlabeled_pool=1000,
        filters={"max_per_class": 24},
    )
    data = materialize(s, frame())
    assert data.train["label"].value_counts().to_dict() == {"games": 4, "libs": 4, "net": 4}
    assert list(data.unlabeled.columns) == ["text", "group", "row_id"]
    held_out = set(data.val["group"]) | set(data.test["group"])
    assert len(data.unlabeled) > 0
    assert not set(data.unlabeled["group"]) & held_out
    labeled_ids = set(all_rows(data)["row_id"])
    assert not set(data.unlabeled["row_id"]) & labeled_ids
    assert len(materialize(s.model_copy(update={"unlabeled_pool": 5}), frame()).unlabeled) == 5
    assert len(materialize(s.model_copy(update={"unlabeled_pool": 0}), frame()).unlabeled) == 0


def test_max_per_class_overflow_feeds_unlabeled_pool_first():
    s = spec(filters={"max_per_class": 10}, unlabeled_pool=15)
    data = materialize(s, frame())
    assert all_rows(data)["label"].value_counts().max() == 10
    # 60 overflow rows come before any few-shot leftovers, and none are labeled rows.
    assert len(data.unlabeled) == 15
    assert not set(data.unlabeled["row_id"]) & set(all_rows(data)["row_id"])


def test_pool_takes_own_rows_first_then_the_rest_of_the_dataset():
    df = pd.concat([frame(), frame(n_per_class=30, classes=("rare",))], ignore_index=True)
    df.loc[df.index[-10:], "section"] = None  # unlabeled rows
    s = spec(
        split={"kind": "group", "group_field": "source"},
        filters={"max_per_class": 20, "exclude_classes": ["rare"]},
        unlabeled_pool=1000,
    )
    data = materialize(s, df)
    pool = data.unlabeled.merge(df.reset_index(names="row_id")[["row_id", "section"]])
    own = pool["section"].isin(["games", "libs", "net"])
    assert own.sum() > 0 and (~own).sum() > 0
    # The scenario's own overflow first, then the other class and unlabeled rows.
    assert own.iloc[: own.sum()].all()
    assert pool["section"].isna().sum() == 10
    held_out = pd.concat([data.val, data.test])
    assert not set(pool["group"]) & set(held_out["group"])
    assert not set(pool["text"]) & set(held_out["text"])
    assert pool["text"].is_unique
    own_only = materialize(s.model_copy(update={"unlabeled_from": "scenario"}), df)
    assert set(own_only.unlabeled["row_id"]) == set(pool.loc[own, "row_id"])


def test_scenarios_of_one_dataset_share_their_pool_order():
    """The rest of the dataset comes in one seeded order, whatever the scenario's labels."""
    df = frame(n_per_class=40)
    a = materialize(spec(filters={"include_classes": ["games"]}, unlabeled_pool=1000), df)
    b = materialize(spec(filters={"include_classes": ["libs"]}, unlabeled_pool=1000), df)
    shared = set(a.unlabeled["row_id"]) & set(b.unlabeled["row_id"])
    order_a = [r for r in a.unlabeled["row_id"] if r in shared]
    order_b = [r for r in b.unlabeled["row_id"] if r in shared]
    assert len(shared) > 10 and order_a == order_b


def test_filters_include_exclude_and_min_count():
    df = pd.concat([frame(), frame(n_per_class=3, classes=("rare",))], ignore_index=True)
    assert "rare" not in materialize(spec(filters={"min_class_count": 5}), df).classes
    assert materialize(spec(filters={"exclude_classes": ["net"]}), df).classes == [
        "games",
        "libs",
        "rare",
    ]
    assert materialize(spec(filters={"include_classes": ["net", "libs"]}), df).classes == [
        "libs",
        "net",
    ]


def test_one_example_class_raises_naming_it():
    df = pd.concat([frame(), frame(n_per_class=1, classes=("lonely",))], ignore_index=True)
    with pytest.raises(InputError, match="'lonely'.*min_class_count"):
        materialize(spec(), df)


def test_missing_field_raises_naming_it():
    with pytest.raises(InputError, match=r"field 'title'.*available: package, summary"):
        materialize(spec(text_fields=["title"]), frame())


def test_zero_rows_after_filters():
    with pytest.raises(InputError, match="no rows left"):
        materialize(spec(filters={"include_classes": ["nothing"]}), frame())


def test_spec_validation_and_fingerprint():
    with pytest.raises(InputError, match="exactly one of label_field"):
        ScenarioSpec.from_dict({"name": "t", "dataset": "d", "text_fields": ["summary"]})
    with pytest.raises(InputError, match="group_field"):
        ScenarioSpec.from_dict(
            {**spec().to_dict(), "split": {"kind": "group"}},
        )
    with pytest.raises(InputError, match="bogus"):
        ScenarioSpec.from_dict({**spec().to_dict(), "bogus": 1})
    assert spec().fingerprint() == ScenarioSpec.from_dict(spec().to_dict()).fingerprint()
    assert spec().fingerprint() != spec(seed=1).fingerprint()


@pytest.mark.slow
def test_debian_sections_scenario():
    if not DEBIAN.is_file():
        pytest.skip(f"{DEBIAN} not present")
    s = spec(
        filters={"min_class_count": 150, "max_per_class": 400},
        split={"kind": "group", "group_field": "source"},
        seed=0,
    )
    data = materialize(s, load_table(DEBIAN))
    assert 44 <= len(data.classes) <= 48
    report = quality_report(data)
    assert report["group_leakage"] == 0
    assert not set(data.train["group"]) & (set(data.val["group"]) | set(data.test["group"]))
    # Nearly every class reaches test; a class built from one source (tasks) cannot.
    assert len(set(data.test["label"])) >= len(data.classes) - 2
