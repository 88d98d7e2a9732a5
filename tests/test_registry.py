"""Registry contract on each backend (a SQLite file in tmp_path, a fresh PostgreSQL schema):
schema, round trips, lineage, atomicity."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import create_engine, func, inspect, select

from modelfab.errors import InputError, NotFoundError
from modelfab.registry import CostRecord, Registry
from modelfab.registry.schema import Model

TABLES = {
    "datasets",
    "scenarios",
    "runs",
    "models",
    "metrics",
    "costs",
    "trials",
    "bench_results",
    "factory_runs",
}


def cost(stage: str, **kw: int) -> CostRecord:
    return CostRecord(stage=stage, cpu_s=1.5, wall_s=2.0, peak_rss_bytes=1 << 20, **kw)


@pytest.fixture
def url(registry_url):
    return registry_url


@pytest.fixture
def reg(url):
    with Registry(url) as r:
        yield r


@pytest.fixture
def run(reg):
    """A registered dataset and scenario, and a running build run; returns (scenario, run_id)."""
    reg.upsert_dataset("d" * 64, "sst2", "hf:sst2", 100, ["text", "label"], "/data/sst2")
    sc = reg.upsert_scenario("s" * 64, "sentiment", "d" * 64, {"task": "clf"}, {"f1": 0.9})
    return sc, reg.start_run(sc.id, "build", {"seed": 0})


def add(reg, run, name="student", **kw):
    sc, run_id = run
    kw.setdefault("role", "student")
    kw.setdefault("family", "minilm")
    return reg.add_model(run_id=run_id, scenario_id=sc.id, name=name, **kw)


def model_count(url: str) -> int:
    """Rows in `models`, counted on a connection of its own (not the registry's)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Model.__table__))
    finally:
        engine.dispose()


def test_tables_created(reg, url):
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) == TABLES
    engine.dispose()


def test_sqlite_uses_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    Registry(url).close()
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_url_comes_from_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELFAB_REGISTRY_URL", raising=False)
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    Registry().close()
    assert (tmp_path / "home" / "registry.sqlite").is_file()


def test_scenario_lookup_by_name_or_id_and_clear_not_found(reg, run):
    sc, _ = run
    assert reg.get_scenario("sentiment") == reg.get_scenario(sc.id) == sc
    assert sc.spec == {"task": "clf"} and sc.quality == {"f1": 0.9}
    assert [s.name for s in reg.list_scenarios()] == ["sentiment"]
    with pytest.raises(NotFoundError) as err:
        reg.get_scenario("nope")
    assert "nope" in str(err.value) and "sentiment" in str(err.value)
    assert "\n" not in str(err.value)


def test_upserts_update_in_place(reg, run):
    sc, _ = run
    reg.upsert_dataset("d" * 64, "sst2", "hf:sst2", 200, ["text"], "/data/v2")
    again = reg.upsert_scenario(sc.id, "sentiment", "d" * 64, {"task": "clf"}, None)
    assert again.quality is None and again.created_at == sc.created_at
    assert reg.get_dataset("d" * 64).n_rows == 200
    with pytest.raises(InputError, match="already used"):
        reg.upsert_scenario("t" * 64, "sentiment", "d" * 64, {"task": "other"})


def test_replace_repoints_a_name_and_keeps_the_old_scenario(reg, run):
    old, run_id = run
    new = reg.upsert_scenario("t" * 64, "sentiment", "d" * 64, {"task": "other"}, replace=True)
    assert reg.get_scenario("sentiment").id == new.id
    renamed = reg.get_scenario(old.id)
    assert renamed.name == f"sentiment@{old.id[:12]}"
    assert reg.get_run(run_id).scenario_id == old.id


def test_run_lifecycle(reg, run):
    _, run_id = run
    assert reg.get_run(run_id).status == "running"
    reg.finish_run(run_id, "succeeded")
    done = reg.get_run(run_id)
    assert done.status == "succeeded" and done.finished_at >= done.started_at
    with pytest.raises(InputError):
        reg.finish_run(run_id, "done")
    with pytest.raises(NotFoundError):
        reg.start_run("missing", "build", {})


def test_add_model_round_trips_metrics_and_costs(reg, run):
    _, run_id = run
    metrics = {"test": {"accuracy": 0.91, "f1": 0.9}, "val": {"accuracy": 0.93}}
    mid = add(
        reg,
        run,
        recipe={"layers": 6},
        artifact_path="/a/student",
        size_bytes=1234,
        metrics=metrics,
        costs=[cost("distill", teacher_forward_passes=10, cache_hits=3), cost("eval")],
    )
    m = reg.get_model(mid)
    assert (m.name, m.role, m.family, m.recipe) == ("student", "student", "minilm", {"layers": 6})
    assert (m.artifact_path, m.size_bytes, m.run_id, m.parent_id) == (
        "/a/student",
        1234,
        run_id,
        None,
    )
    assert reg.metrics(mid) == metrics
    rows = reg.costs(model_id=mid)
    assert [c.stage for c in rows] == ["distill", "eval"]
    assert rows[0].to_record() == cost("distill", teacher_forward_passes=10, cache_hits=3)
    assert reg.costs(run_id=run_id) == rows


def test_record_cost_not_tied_to_a_model(reg, run):
    _, run_id = run
    reg.record_cost(run_id, "label", cost("ignored", labeled_examples=120))
    (row,) = reg.costs(run_id=run_id)
    assert (row.stage, row.model_id, row.labeled_examples) == ("label", None, 120)


def test_lineage_walks_parents_to_root(reg, run):
    teacher = add(reg, run, "teacher", role="teacher", family="bert")
    student = add(reg, run, "student", parent_id=teacher)
    int8 = add(reg, run, "student-int8", parent_id=student, recipe={"quant": "int8"})
    assert [m.id for m in reg.lineage(int8)] == [int8, student, teacher]
    assert [m.id for m in reg.lineage(teacher)] == [teacher]
    with pytest.raises(NotFoundError):
        add(reg, run, "orphan", parent_id="0" * 32)


def test_prefix_lookup_and_unknown_id(reg, run):
    a = add(reg, run, "a", model_id="abc123")
    add(reg, run, "b", model_id="abd456")
    assert reg.get_model("abc").id == a
    assert reg.get_model("abc123").name == "a"
    with pytest.raises(InputError, match="ambiguous"):
        reg.get_model("ab")
    with pytest.raises(NotFoundError):
        reg.get_model("zzz")
    with pytest.raises(NotFoundError):
        reg.get_model("a%")  # LIKE wildcards are literal
    with pytest.raises(NotFoundError):
        reg.metrics("nope")


def test_list_models_by_scenario(reg, run):
    a, b = add(reg, run, "a"), add(reg, run, "b")
    assert [m.id for m in reg.list_models()] == [a, b]
    assert [m.id for m in reg.list_models("sentiment")] == [a, b]
    with pytest.raises(NotFoundError):
        reg.list_models("other")


@pytest.mark.parametrize(
    "bad",
    [
        {"metrics": {"test": {"accuracy": 0.9, "f1": "high"}}},
        {"metrics": {"test": {"f1": float("nan")}}},
        # a DB-level failure after the model and metric rows were flushed: stage is NOT NULL
        {"metrics": {"test": {"f1": 0.5}}, "costs": [cost("ok"), cost(None)]},
    ],
)
def test_add_model_is_atomic(reg, run, url, bad):
    keep = add(reg, run, "keep", metrics={"test": {"f1": 0.1}}, costs=[cost("x")])
    with pytest.raises(InputError):
        add(reg, run, "broken", model_id="broken1", **bad)
    assert model_count(url) == 1
    assert [m.id for m in reg.list_models()] == [keep]
    assert len(reg.costs()) == 1
    with pytest.raises(NotFoundError):
        reg.get_model("broken1")


def test_duplicate_model_id_is_refused_without_touching_the_original(reg, run):
    add(reg, run, "first", model_id="m1", metrics={"test": {"f1": 0.1}})
    with pytest.raises(InputError):
        add(reg, run, "second", model_id="m1", metrics={"test": {"f1": 0.9}})
    assert reg.get_model("m1").name == "first"
    assert reg.metrics("m1") == {"test": {"f1": 0.1}}


def test_failed_run_leaves_no_models_but_keeps_costs(reg, run, url):
    _, run_id = run
    teacher = add(reg, run, "teacher", role="teacher", costs=[cost("adapt")])
    add(reg, run, "student", parent_id=teacher, metrics={"test": {"f1": 0.5}})
    reg.finish_run(run_id, "failed", error="export parity check failed")
    assert model_count(url) == 0
    assert reg.get_run(run_id).error == "export parity check failed"
    assert [(c.stage, c.model_id) for c in reg.costs(run_id=run_id)] == [("adapt", None)]
    assert reg.delete_run_models(run_id) == 0


def test_delete_run_models(reg, run, url):
    _, run_id = run
    add(reg, run, "a")
    add(reg, run, "b")
    assert reg.delete_run_models(run_id) == 2
    assert model_count(url) == 0


def test_two_instances_see_each_others_writes(url, run):
    sc, run_id = run
    with Registry(url) as a, Registry(url) as b:
        mid = a.add_model(
            run_id=run_id, scenario_id=sc.id, name="m", role="baseline", family="tfidf"
        )
        assert b.get_model(mid).family == "tfidf"
        b.finish_run(run_id, "succeeded")
        assert a.get_run(run_id).status == "succeeded"


def test_concurrent_writers_do_not_lose_rows(url, run):
    sc, run_id = run
    errors: list[BaseException] = []

    def write(tag: str) -> None:
        try:
            with Registry(url) as r:
                for i in range(15):
                    r.add_model(
                        run_id=run_id,
                        scenario_id=sc.id,
                        name=f"{tag}{i}",
                        role="student",
                        family="f",
                        metrics={"test": {"f1": i / 15}},
                        costs=[cost("s")],
                    )
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert model_count(url) == 60
