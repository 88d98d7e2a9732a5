"""The build pipeline end to end on a tiny random teacher and tiny data."""

from __future__ import annotations

import json
import os

import pytest
from pipeline_helpers import fast_config, write_dataset

from modelfab.data.scenario import ScenarioSpec, SplitSpec
from modelfab.errors import InputError, NotFoundError
from modelfab.export.manifest import sha256_file, verify_bundle
from modelfab.pipeline.api import create_scenario, import_data
from modelfab.pipeline.build import build
from modelfab.registry import Registry


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELFAB_REGISTRY_URL", raising=False)
    return tmp_path / "home"


@pytest.fixture
def scenario(home, tmp_path):
    version = import_data(write_dataset(tmp_path / "tiny.jsonl"), name="tiny")
    spec = ScenarioSpec(
        name="tiny",
        dataset=version.name,
        text_fields=["text"],
        label_field="label",
        split=SplitSpec(kind="group", group_field="src"),
        unlabeled_pool=10,
    )
    create_scenario(spec)
    return spec.name


def teacher_id(roles):
    return roles["teacher"]["model_id"]


def _stage_costs(registry, model_id):
    return {c.stage: c for c in registry.costs(model_id=model_id)}


def test_build_registers_teacher_baseline_and_student_with_lineage(
    scenario, home, tiny_teacher_dir
):
    result = build(scenario, fast_config(tiny_teacher_dir, bench=True))
    registry = Registry()
    roles = {r["role"]: r for r in result.records}
    assert set(roles) == {"teacher", "student", "baseline"}
    assert (
        roles["baseline"]["variant"].startswith("teacher-")
        and "int8" in roles["baseline"]["variant"]
    )
    student = registry.get_model(roles["student"]["model_id"])
    assert [m.role for m in registry.lineage(student.id)] == ["student", "teacher"]
    baseline = registry.get_model(roles["baseline"]["model_id"])
    assert [m.role for m in registry.lineage(baseline.id)] == ["baseline", "teacher"]
    assert registry.metrics(student.id)["test"]["macro_f1"] == roles["student"]["macro_f1"]
    assert roles["student"]["latency_b1_p50_ms"] > 0
    assert roles["student"]["peak_rss_bytes"] > 0 and roles["teacher"]["peak_rss_bytes"] > 0
    assert roles["student"]["chosen"] and not roles["teacher"]["chosen"]
    assert set(_stage_costs(registry, student.id)) == {
        "distill:transformer",
        "export:transformer-l2-int8",
    }
    teacher_costs = _stage_costs(registry, roles["teacher"]["model_id"])
    assert teacher_costs["teacher-features"].teacher_forward_passes > 0
    verify_bundle(result.bundle)
    verify_bundle_files = json.loads(
        (home / "artifacts" / "models" / teacher_id(roles) / "manifest.json").read_text()
    )
    assert set(verify_bundle_files) == {"adapter.json", "head.safetensors"}
    card = json.loads((result.bundle / "card.json").read_text())
    assert card["lineage"]["parent"] == "teacher"
    assert card["metrics"]["test"]["macro_f1"] == pytest.approx(roles["student"]["macro_f1"])
    assert card["cost"]["distill:transformer"]["cpu_s"] > 0
    assert card["choice"]["chosen"] and card["choice"]["chosen_variant"] == "transformer-l2-int8"
    assert registry.get_run(result.run_id).status == "succeeded"
    history = registry.bench_history(model=student.id)
    assert [row.threads for row in history] == [1]
    # Stored against the published bundle, not the staging folder it was measured in.
    assert history[0].artifact == str(result.bundle)
    assert history[0].artifact_sha == sha256_file(result.bundle / "manifest.json")
    assert len(registry.bench_history(scenario=scenario)) == len(result.records)


def test_every_family_and_compression_becomes_a_registered_variant(
    scenario, home, tiny_teacher_dir
):
    result = build(scenario, fast_config(tiny_teacher_dir, every_variant=True))
    registry = Registry()
    by_variant = {r["variant"]: r for r in result.records}
    assert {
        "transformer-l2-int8",
        "transformer-l2-static-int8",
        "transformer-l2-fp32",
        "transformer-l2-int8-opt-basic",
        "transformer-l1-dropped-int8",
        "transformer-l2-pruned-int8",
        "static-embedding-int8",
        "hashed-ngram-int8",
        "ensemble-int8",
    } <= set(by_variant)
    assert by_variant["ensemble-int8"]["family"] == "ensemble"
    assert sum(r["chosen"] for r in result.records) == 1
    for name, parent in [
        ("transformer-l2-fp32", "transformer-l2-int8"),
        ("transformer-l1-dropped-int8", "transformer-l2-int8"),
        ("transformer-l2-pruned-int8", "transformer-l2-int8"),
        ("ensemble-int8", "transformer-l2-pruned-int8"),
    ]:
        model = registry.get_model(by_variant[name]["model_id"])
        assert model.parent_id == by_variant[parent]["model_id"]
    pruned = registry.get_model(by_variant["transformer-l2-pruned-int8"]["model_id"])
    assert pruned.recipe["compression"]["name"] == "prune"
    assert by_variant["transformer-l1-dropped-int8"]["compression"]["layers"] == 1
    for record in result.records[1:]:
        verify_bundle(registry.get_model(record["model_id"]).artifact_path)
    card = json.loads((result.bundle / "card.json").read_text())
    parent = registry.get_model(card["lineage"]["model_id"]).parent_id
    assert card["lineage"]["parent_model_id"] == parent


def test_parents_first_orders_lineage():
    from modelfab.pipeline.build import parents_first

    rows = [
        {"model_id": "c", "parent_id": "b"},
        {"model_id": "b", "parent_id": "a"},
        {"model_id": "a", "parent_id": None},
    ]
    assert [r["model_id"] for r in parents_first(rows)] == ["a", "b", "c"]
    with pytest.raises(InputError, match="lineage"):
        parents_first([{"model_id": "x", "parent_id": "y"}])


def test_second_build_encodes_nothing_new(scenario, home, tiny_teacher_dir):
    first = build(scenario, fast_config(tiny_teacher_dir))
    second = build(scenario, fast_config(tiny_teacher_dir))
    registry = Registry()
    teacher1 = _stage_costs(registry, first.records[0]["model_id"])["teacher-features"]
    teacher2 = _stage_costs(registry, second.records[0]["model_id"])["teacher-features"]
    assert teacher2.teacher_forward_passes == 0
    assert teacher2.cache_hits == teacher1.teacher_forward_passes + teacher1.cache_hits


def test_failed_build_leaves_no_model_and_no_artifact(
    scenario, home, tiny_teacher_dir, monkeypatch
):
    import modelfab.pipeline.build as build_module

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(build_module, "export_bundle", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build(scenario, fast_config(tiny_teacher_dir))
    registry = Registry()
    assert registry.list_models() == []
    assert [r.status for r in registry.list_runs()] == ["failed"]
    assert list((home / "artifacts" / "models").iterdir()) == []
    assert list((home / "artifacts" / ".staging").iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setenv("MODELFAB_HOME", str(home))
    result = build(scenario, fast_config(tiny_teacher_dir))
    assert len(Registry().list_models()) == 3 and result.bundle.is_dir()


def test_build_sweeps_what_a_killed_build_left(scenario, home, tiny_teacher_dir):
    dead_pid = 2**22 + 12345  # above the default pid_max, so never alive
    stale = home / "artifacts" / ".staging" / f"oldrun.{dead_pid}"
    (stale / "half-written").mkdir(parents=True)
    # Killed between renaming its folders into place and committing their rows:
    orphan = home / "artifacts" / "models" / "deadbeef"
    orphan.mkdir(parents=True)
    journal = home / "artifacts" / ".pending" / f"oldrun.{dead_pid}.json"
    journal.parent.mkdir(parents=True)
    journal.write_text('["deadbeef"]')
    # A folder no journal names (another registry's model sharing this home) is kept.
    foreign = home / "artifacts" / "models" / "foreign"
    foreign.mkdir()
    build(scenario, fast_config(tiny_teacher_dir))
    assert not stale.exists() and not orphan.exists() and not journal.exists()
    assert foreign.is_dir()
    known = {m.id for m in Registry().list_models()}
    assert set(os.listdir(home / "artifacts" / "models")) == known | {"foreign"}


def test_failure_after_publish_removes_rows_and_folders(
    scenario, home, tiny_teacher_dir, monkeypatch
):
    """If the registry commit fails after the folders were renamed into place, neither the
    teacher nor the student survives: no row, no folder."""

    def refuse(self, *args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Registry, "add_models", refuse)
    with pytest.raises(RuntimeError, match="went away"):
        build(scenario, fast_config(tiny_teacher_dir))
    monkeypatch.undo()
    monkeypatch.setenv("MODELFAB_HOME", str(home))
    assert Registry().list_models() == []
    assert list((home / "artifacts" / "models").iterdir()) == []
    assert list((home / "artifacts" / ".pending").iterdir()) == []


def test_unknown_scenario(home):
    with pytest.raises(NotFoundError, match="nope"):
        build("nope")


def test_finetune_adapter_when_it_wins(scenario, home, tiny_teacher_dir, monkeypatch):
    """A fine-tuned teacher body replaces the cached features for the head and the student."""
    from dataclasses import replace

    from modelfab.adapt import finetune

    real_fit = finetune.FineTuneAdapter.fit

    def fit_and_win(self, data):
        real_fit(self, data)
        self.val_f1_ = 2.0  # force the choice to test the fine-tuned path
        return self

    monkeypatch.setattr(finetune.FineTuneAdapter, "fit", fit_and_win)
    config = replace(fast_config(tiny_teacher_dir), adapt=("logreg", "finetune"))
    result = build(scenario, config)
    registry = Registry()
    teacher = registry.get_model(result.records[0]["model_id"])
    assert teacher.recipe["strategy"] == "finetune"
    assert (home / "artifacts" / "models" / teacher.id / "encoder.safetensors").is_file()
    adapt_cost = _stage_costs(registry, teacher.id)["adapt"]
    assert adapt_cost.teacher_forward_passes > 0  # the texts were re-encoded


def test_bad_bench_row_rolls_back_every_model(scenario, home, tiny_teacher_dir, monkeypatch):
    """Models and their measurements are one transaction: a bench row the registry refuses
    leaves no model row and no published folder."""
    import modelfab.pipeline.build as build_module

    real = build_module.bench_rows

    def broken(*args, **kwargs):
        return [{**row, "threads": 0} for row in real(*args, **kwargs)]

    monkeypatch.setattr(build_module, "bench_rows", broken)
    with pytest.raises(InputError, match="threads"):
        build(scenario, fast_config(tiny_teacher_dir, bench=True))
    assert Registry().list_models() == []
    assert list((home / "artifacts" / "models").iterdir()) == []


def dataset_rows(path, per_class: int = 30) -> list[dict]:
    """The tiny labeled rows of write_dataset, as dicts to edit."""
    return [json.loads(line) for line in write_dataset(path, per_class).read_text().splitlines()]


def scenario_of(rows: list[dict], path, name: str, val_frac: float = 0.1, **spec) -> str:
    """Write `rows`, import them as dataset `name` and define scenario `name` over them."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    version = import_data(path, name=name)
    split = SplitSpec(kind="group", group_field="src", val_frac=val_frac)
    create_scenario(
        ScenarioSpec(
            name=name,
            dataset=version.name,
            text_fields=["text"],
            label_field="label",
            split=split,
            **spec,
        )
    )
    return name


@pytest.fixture
def pooled(home, tmp_path):
    """A scenario with 30 unlabeled rows in its dataset (label null) for the pool."""
    rows = dataset_rows(tmp_path / "pooled.jsonl")
    for i, row in enumerate(rows[:30]):
        rows.append({"text": row["text"] + " extra", "label": None, "src": f"pool-{i}"})
    scenario_of(rows, tmp_path / "pooled.jsonl", "pooled", val_frac=0.25, unlabeled_pool=30)
    return "pooled"


def test_build_stores_its_labels_with_provenance_and_calibration(pooled, home, tiny_teacher_dir):
    from dataclasses import replace

    from modelfab.data.versions import DatasetStore
    from modelfab.pipeline.config import LabelsConfig

    result = build(pooled, fast_config(tiny_teacher_dir))
    labels = json.loads((result.bundle / "card.json").read_text())["labels"]
    store = DatasetStore(home)
    table = store.load(store.get("pooled-labels").id)
    assert labels["version"] == store.get("pooled-labels").id
    assert labels["by_provenance"] == table["provenance"].value_counts().to_dict()
    assert labels["by_provenance"]["teacher"] == labels["pool_rows_used"] == 30  # soft: all
    assert (table.loc[table["provenance"] == "human", "confidence"] == 1.0).all()
    teacher = table[table["provenance"] == "teacher"]
    assert teacher["confidence"].between(0, 1).all()
    assert set(teacher["text"]) == {t for t in teacher["text"] if t.endswith(" extra")}
    assert labels["calibration"]["temperature"] > 0
    assert labels["screening"] == {"excluded": 0}

    cfg = LabelsConfig(pool_labels="hard", target_precision=0.34)
    hard = replace(fast_config(tiny_teacher_dir), labels=cfg)
    hard_labels = json.loads((build(pooled, hard).bundle / "card.json").read_text())["labels"]
    assert hard_labels["mode"] == "hard"
    assert 0 < hard_labels["pool_rows_used"] == hard_labels["teacher_accepted"] <= 30


def test_data_loop_suspects_queue_and_answers(pooled, home, tiny_teacher_dir, tmp_path):
    from modelfab.data.versions import DatasetStore
    from modelfab.labels.active import write_queue
    from modelfab.pipeline.build import load_scenario
    from modelfab.pipeline.config import TeacherConfig
    from modelfab.pipeline.loop import import_answers, labeling_queue, suspect_labels

    teacher = TeacherConfig(path=str(tiny_teacher_dir), max_length=32, precision="fp32")
    registry = Registry()
    _, before, _ = load_scenario(pooled, registry, home)
    ranked = suspect_labels(pooled, teacher=teacher)
    assert len(ranked) == len(before.train)
    assert ranked["quality"].is_monotonic_increasing
    assert set(ranked["row_id"]) == set(before.train["row_id"])

    queue = labeling_queue(pooled, k=5, teacher=teacher)
    frame = DatasetStore(home).load(registry.get_scenario(pooled).dataset_id)
    assert len(queue) == 5 and frame.loc[queue["row_id"], "label"].isna().all()
    answers = write_queue(queue.assign(label=queue["suggested"]), tmp_path / "answers.jsonl")
    version, n = import_answers(pooled, answers)
    assert n == 5
    spec, after, record = load_scenario(pooled, registry, home)
    assert record.dataset_id == version.id and spec.answered_rows == sorted(queue["row_id"])
    assert set(queue["row_id"]) <= set(after.train["row_id"])  # answers join train
    for split in ("val", "test"):  # and the split of everything else stays put
        assert getattr(after, split)["row_id"].tolist() == getattr(before, split)["row_id"].tolist()
    assert not set(queue["row_id"]) & set(after.unlabeled["row_id"])
    with pytest.raises(InputError, match="not one of the scenario's classes"):
        import_answers(pooled, write_queue(queue.assign(label="nope"), tmp_path / "bad.csv"))


def test_build_can_leave_out_flagged_train_labels(home, tmp_path, tiny_teacher_dir):
    from dataclasses import replace

    from pipeline_helpers import WORDS

    from modelfab.pipeline.config import LabelsConfig

    rows = dataset_rows(tmp_path / "noisy.jsonl")
    for row in rows[::9]:  # a clear mislabel: games text called science and so on
        names = list(WORDS)
        row["label"] = names[(names.index(row["label"]) + 1) % len(names)]
    scenario_of(rows, tmp_path / "noisy.jsonl", "noisy")
    config = replace(fast_config(tiny_teacher_dir), labels=LabelsConfig(exclude_label_issues=True))
    card = json.loads((build("noisy", config).bundle / "card.json").read_text())
    screening = card["labels"]["screening"]
    assert screening["excluded"] > 0
    assert card["data"]["train"] == screening["flagged_of"] - screening["excluded"]


def test_build_with_a_search_budget_records_its_trials(scenario, home, tiny_teacher_dir):
    from dataclasses import replace

    config = replace(fast_config(tiny_teacher_dir), adapt=("logreg", "mlp"), adapt_budget_s=3)
    trials = Registry().trials(build(scenario, config).run_id)
    assert trials and {t["strategy"] for t in trials} <= {"logreg", "mlp"}
    with pytest.raises(InputError, match="budget"):
        replace(config, adapt_budget_s=-1)
