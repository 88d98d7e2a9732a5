"""The registry on a server database: several processes writing at once (PostgreSQL and
SQLite), what only PostgreSQL enforces, the CLI by MODELFAB_REGISTRY_URL, and one clear line
for a database that cannot be used."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import sys
from datetime import UTC, datetime, timedelta

import pytest
from pipeline_helpers import fast_config, write_dataset
from registry_workers import RUNS_PER_WORKER, SHARED_DATASET, WORKERS, write_concurrently
from sqlalchemy import create_engine, func, make_url, select

from modelfab.cli import main
from modelfab.data.scenario import ScenarioSpec
from modelfab.errors import EnvironmentProblem, InputError, NotFoundError
from modelfab.pipeline.api import create_scenario, import_data
from modelfab.pipeline.build import build
from modelfab.registry import Registry
from modelfab.registry.schema import Base

UNREACHABLE = "postgresql+psycopg://someone:s3cret@127.0.0.1:1/registry"


def _row_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: conn.scalar(select(func.count()).select_from(table))
                for name, table in Base.metadata.tables.items()
            }
    finally:
        engine.dispose()


def test_several_processes_write_at_once_without_duplicates_or_errors(registry_url, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [
        ctx.Process(target=write_concurrently, args=(registry_url, w, barrier, str(tmp_path)))
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    stuck = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.terminate()
    assert not stuck, f"workers {stuck} did not finish in 120 s"
    outcomes = [json.loads((tmp_path / f"{w}.json").read_text()) for w in range(WORKERS)]
    assert [o["error"] for o in outcomes] == [None] * WORKERS
    assert sum(o["name_won"] for o in outcomes) == 1
    assert sum(o["name_refused"] for o in outcomes) == WORKERS - 1
    assert sum(o["dup_refused"] for o in outcomes) == WORKERS - 1

    runs = WORKERS * RUNS_PER_WORKER
    assert _row_counts(registry_url) == {
        "datasets": 1 + WORKERS,
        "scenarios": 2,  # the shared one and the one that won "contested"
        "runs": runs,
        "models": 2 * runs + 1,  # a teacher and a student per run, and one "dup"
        "metrics": 2 * runs,
        "costs": 3 * runs,  # adapt (teacher), label (run), eval (student)
        "trials": 0,
        "bench_results": runs,
        "factory_runs": 0,
    }
    with Registry(registry_url) as r:
        assert r.get_dataset(SHARED_DATASET).n_rows == 10
        assert {run.status for run in r.list_runs()} == {"succeeded"}
        students = [m for m in r.list_models() if m.role == "student" and m.id != "dup"]
        assert len(students) == runs
        assert all([m.role for m in r.lineage(m.id)] == ["student", "teacher"] for m in students)
        assert len(r.bench_history(limit=None)) == runs
    if registry_url.startswith("sqlite"):
        with sqlite3.connect(registry_url.removeprefix("sqlite:///")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_timestamps_come_back_in_utc_whatever_the_session_time_zone(pg_registry_url):
    url = make_url(pg_registry_url)
    tokyo = url.update_query_dict({"options": url.query["options"] + " -ctimezone=Asia/Tokyo"})
    with Registry(tokyo.render_as_string(hide_password=False)) as r:
        created = r.upsert_dataset("d" * 64, "n", "s", 1, ["text"], "/d").created_at
        again = r.get_dataset("d" * 64).created_at
    assert again == created and again.tzinfo is UTC
    assert abs(datetime.now(UTC) - again) < timedelta(minutes=5)


@pytest.mark.parametrize(
    ("name", "problem"),
    [("x" * 201, "too long"), ("nul\x00byte", "NUL")],
)
def test_values_postgresql_refuses_are_one_input_error(pg_registry_url, name, problem):
    with Registry(pg_registry_url) as r:
        with pytest.raises(InputError, match=problem) as err:
            r.upsert_dataset("d" * 64, name, "s", 1, ["text"], "/d")
        assert "\n" not in str(err.value)
        with pytest.raises(NotFoundError):
            r.get_dataset("d" * 64)


def test_plain_postgresql_url_means_psycopg(pg_registry_url):
    plain = pg_registry_url.replace("postgresql+psycopg://", "postgresql://", 1)
    assert plain != pg_registry_url
    with Registry(plain) as r:
        r.upsert_dataset("d" * 64, "n", "s", 1, ["text"], "/d")
    with Registry(pg_registry_url) as r:
        assert r.get_dataset("d" * 64).name == "n"


def test_cli_flow_on_the_url_in_the_environment(registry_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFAB_REGISTRY_URL", registry_url)
    data = write_dataset(tmp_path / "tiny.jsonl")
    assert main(["data", "import", str(data), "--name", "tiny"]) == 0
    assert main(["scenario", "create", "tiny", "--dataset", "tiny", "--label", "label"]) == 0
    capsys.readouterr()
    assert main(["scenario", "list"]) == 0
    assert "tiny" in capsys.readouterr().out
    if registry_url.startswith("postgresql"):
        assert not (tmp_path / "home" / "registry.sqlite").exists()
    with Registry(registry_url) as r:
        assert [s.name for s in r.list_scenarios()] == ["tiny"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unreachable_database_is_one_line_and_exit_5(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFAB_REGISTRY_URL", UNREACHABLE)
    assert main(["scenario", "list"]) == EnvironmentProblem.exit_code == 5
    line = _one_error_line(capsys)
    assert line.startswith("error: cannot reach the registry database")
    assert "127.0.0.1:1" in line and "s3cret" not in line


def test_missing_driver_is_one_line_and_exit_5(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now fails
    with pytest.raises(EnvironmentProblem, match=r"pip install 'psycopg\[binary\]'"):
        Registry(UNREACHABLE)
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFAB_REGISTRY_URL", UNREACHABLE)
    assert main(["models", "list"]) == 5
    line = _one_error_line(capsys)
    assert "needs the Python module 'psycopg'" in line and "s3cret" not in line


@pytest.mark.parametrize(
    ("url", "problem"),
    [("mysqlish://host/db", "unknown database kind"), ("no url at all", "not a database URL")],
)
def test_bad_url_is_one_input_error(tmp_path, monkeypatch, capsys, url, problem):
    with pytest.raises(InputError, match=problem):
        Registry(url)
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFAB_REGISTRY_URL", url)
    assert main(["scenario", "list"]) == InputError.exit_code == 2
    assert problem in _one_error_line(capsys)


@pytest.mark.slow
def test_a_build_records_into_postgresql(pg_registry_url, tmp_path, monkeypatch, tiny_teacher_dir):
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELFAB_REGISTRY_URL", pg_registry_url)
    version = import_data(write_dataset(tmp_path / "tiny.jsonl"), name="tiny")
    create_scenario(
        ScenarioSpec(name="tiny", dataset=version.name, text_fields=["text"], label_field="label")
    )
    result = build("tiny", fast_config(tiny_teacher_dir, bench=True))
    assert not (tmp_path / "home" / "registry.sqlite").exists()
    with Registry(pg_registry_url) as r:
        roles = {m.role: m for m in r.list_models("tiny")}
        assert set(roles) == {"teacher", "student", "baseline"}
        assert [m.role for m in r.lineage(roles["student"].id)] == ["student", "teacher"]
        assert r.get_run(result.run_id).status == "succeeded"
        assert r.metrics(roles["student"].id)["test"]["macro_f1"] >= 0
        assert r.costs(model_id=roles["student"].id)
        assert r.bench_history(model=roles["student"].id)
