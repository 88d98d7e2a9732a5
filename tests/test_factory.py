"""`modelfab run RECIPE`: deterministic ids, skip of unchanged scenarios, crash-safe resume."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from factory_helpers import models_and_metrics, write_recipe

from modelfab.cli import main
from modelfab.errors import InputError
from modelfab.factory.keys import build_key, teacher_model_id
from modelfab.factory.orchestrate import RunOptions, run_recipe
from modelfab.factory.orphans import orphan_files
from modelfab.pipeline.build import variant_id
from modelfab.pipeline.config import BuildConfig, TeacherConfig
from modelfab.pipeline.workspace import sweep_orphans
from modelfab.registry import Registry

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELFAB_REGISTRY_URL", raising=False)
    return tmp_path / "home"


def test_variant_ids_follow_the_build_key():
    assert variant_id("k", "teacher") == variant_id("k", "teacher")
    assert variant_id("k", "teacher") != variant_id("k", "hashed-ngram-int8")
    assert variant_id("k", "teacher") != variant_id("k2", "teacher")
    assert variant_id(None, "teacher") != variant_id(None, "teacher")  # no key: random
    assert len(variant_id("k", "teacher")) == 32


def test_build_key_changes_with_spec_config_and_teacher(tiny_teacher_dir, tmp_path):
    config = BuildConfig(teacher=TeacherConfig(path=str(tiny_teacher_dir)))
    key = build_key("scenario-a", config)
    assert key == build_key("scenario-a", BuildConfig(teacher=TeacherConfig(str(tiny_teacher_dir))))
    assert key != build_key("scenario-b", config)
    other = BuildConfig(teacher=TeacherConfig(path=str(tiny_teacher_dir)), adapt=("logreg",))
    assert key != build_key("scenario-a", other)
    # The teacher counts by its weights, not its path: a copy elsewhere is the same teacher.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_teacher_dir, copy)
    assert key == build_key("scenario-a", BuildConfig(teacher=TeacherConfig(path=str(copy))))


def test_build_key_follows_the_student_bodys_bytes_not_its_path(tiny_teacher_dir, tmp_path):
    import dataclasses

    from modelfab.factory.options import BuildOptions

    base = BuildOptions.parse({"teacher": str(tiny_teacher_dir)}).to_config()
    first, copy, other = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c"
    first.write_bytes(b"body one")
    copy.write_bytes(b"body one")
    other.write_bytes(b"body two")

    def key(body):
        config = BuildOptions.parse(
            {"teacher": str(tiny_teacher_dir), "student_body": body}
        ).to_config()
        assert config.student.body == body
        return build_key("s", config)

    assert key(str(first)) == key(str(copy))
    assert key(str(first)) != key(str(other))
    assert key(str(first)) != build_key("s", base)
    missing = dataclasses.replace(base.student, body=str(tmp_path / "missing"))
    with pytest.raises(InputError, match="missing: no such file"):
        build_key("s", dataclasses.replace(base, student=missing))


def test_run_builds_every_scenario_then_skips_them(home, tmp_path, tiny_teacher_dir):
    recipe = write_recipe(tmp_path / "r", tiny_teacher_dir)
    first = run_recipe(recipe, RunOptions(threads=1))
    assert first.status == "succeeded"
    assert [i["status"] for i in first.scenarios] == ["built"] * 3
    assert [i["order"] for i in first.scenarios] == [1, 2, 3]
    registry = Registry()
    built = models_and_metrics(registry)
    assert len(built) == 9  # teacher, student, int8 baseline per scenario
    for item in first.scenarios:
        assert registry.get_model(item["teacher_id"]).run_id == item["run_id"]
        assert item["teacher_id"] == teacher_model_id(item["key"])

    again = run_recipe(recipe, RunOptions(threads=1))
    assert again.id != first.id
    assert [i["status"] for i in again.scenarios] == ["skipped"] * 3
    assert [i["run_id"] for i in again.scenarios] == [i["run_id"] for i in first.scenarios]
    assert models_and_metrics(registry) == built
    assert len(registry.list_runs()) == 3  # nothing was built twice
    assert orphan_files(home, registry) == []


def test_changed_scenario_is_rebuilt_under_new_ids(home, tmp_path, tiny_teacher_dir):
    recipe = write_recipe(tmp_path / "r", tiny_teacher_dir, classes=("games",))
    first = run_recipe(recipe, RunOptions(threads=1))
    text = recipe.read_text().replace("unlabeled_pool: 10", "unlabeled_pool: 12")
    recipe.write_text(text)
    second = run_recipe(recipe, RunOptions(threads=1))
    assert [i["status"] for i in second.scenarios] == ["built", "built"]
    assert {i["teacher_id"] for i in second.scenarios}.isdisjoint(
        i["teacher_id"] for i in first.scenarios
    )


def test_sweep_closes_the_run_a_killed_build_left(home, tmp_path, tiny_teacher_dir):
    recipe = write_recipe(tmp_path / "r", tiny_teacher_dir, classes=("games",))
    run = run_recipe(recipe, RunOptions(threads=1, only=["tiny-games"]))
    registry = Registry()
    scenario = registry.get_scenario("tiny-games")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    orphan_run = registry.start_run(scenario.id, "build", {})
    finished_run = registry.start_run(scenario.id, "build", {})
    # A build killed before it committed, and one killed after (its models are in).
    staging = home / "artifacts" / ".staging"
    (staging / f"{orphan_run}.{pid}").mkdir(parents=True)
    (staging / f"{finished_run}.{pid}").mkdir(parents=True)
    registry.add_model(
        run_id=finished_run, scenario_id=scenario.id, name="x/teacher", role="teacher", family="f"
    )
    sweep_orphans(home / "artifacts", registry)
    assert registry.get_run(orphan_run).status == "failed"
    assert "interrupted" in (registry.get_run(orphan_run).error or "")
    assert registry.get_run(finished_run).status == "succeeded"
    assert not any(staging.iterdir())
    assert registry.get_run(run.scenarios[0]["run_id"]).status == "succeeded"


def test_bad_run_options_are_one_line_errors(home, tmp_path, tiny_teacher_dir, capsys):
    recipe = write_recipe(tmp_path / "r", tiny_teacher_dir)
    assert main(["run", str(recipe), "--engine", "spark"]) == 2
    assert "unknown engine 'spark'" in capsys.readouterr().err
    assert main(["run", str(recipe), "--address", "ray://x:10001"]) == 2
    assert main(["run", str(recipe), "--only", "nope"]) == 2
    assert "--only" in capsys.readouterr().err
    with pytest.raises(InputError, match="threads"):
        RunOptions(threads=0).threads_per_task()


def _cli(recipe: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "modelfab.cli", "run", str(recipe), "--threads", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: SIGKILL reaches every process of it
    )


def _factory_run_succeeded(home: Path) -> bool:
    db = home / "registry.sqlite"
    if not db.is_file():  # killed before it opened the registry
        return False
    with Registry(f"sqlite:///{db}") as registry:
        return any(r.status == "succeeded" for r in registry.list_factory_runs())


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_gives_the_same_models(tmp_path, tiny_teacher_dir):
    recipe = write_recipe(tmp_path / "r", tiny_teacher_dir)
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "MODELFAB_QUIET": "1",
    }
    env.pop("MODELFAB_REGISTRY_URL", None)

    ref_env = {**env, "MODELFAB_HOME": str(tmp_path / "ref")}
    assert _cli(recipe, ref_env).wait(timeout=300) == 0
    reference = models_and_metrics(Registry(f"sqlite:///{tmp_path / 'ref' / 'registry.sqlite'}"))

    home = tmp_path / "killed"
    kill_env = {**env, "MODELFAB_HOME": str(home)}
    kills = 0
    for delay in (3.0, 6.5, 9.0, 5.0):  # seconds into each attempt: import, encode, train, ...
        proc = _cli(recipe, kill_env)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        else:  # this attempt resumed the killed run and finished it
            assert proc.returncode == 0
        # A kill can land after the run was recorded finished, while its process shuts down;
        # one more attempt would then be a fresh run of a finished recipe (every scenario
        # skipped), not a resume.
        if _factory_run_succeeded(home):
            break
    assert kills >= 2
    if not _factory_run_succeeded(home):  # every attempt was killed: resume now
        assert _cli(recipe, kill_env).wait(timeout=300) == 0

    registry = Registry(f"sqlite:///{home / 'registry.sqlite'}")
    assert models_and_metrics(registry) == reference
    assert orphan_files(home, registry) == []
    assert {r.status for r in registry.list_runs()} <= {"succeeded", "failed"}
    factory_runs = registry.list_factory_runs()
    assert len(factory_runs) == 1 and factory_runs[0].status == "succeeded"
    assert sorted(i["order"] for i in factory_runs[0].scenarios) == [1, 2, 3]


def test_report_writes_the_marginal_cost_ledger(home, tmp_path, tiny_teacher_dir, capsys):
    from modelfab.factory.ledger import ledger

    recipe = write_recipe(tmp_path / "r", tiny_teacher_dir)
    run = run_recipe(recipe, RunOptions(threads=1))
    registry = Registry()
    book = ledger(registry, run.id[:8], price_per_core_hour=2.0)
    rows = {s.scenario: s for s in book.scenarios}
    assert [s.order for s in book.scenarios] == [1, 2, 3]
    for item in run.scenarios:
        s = rows[item["scenario"]]
        costs = registry.costs(run_id=item["run_id"])
        assert s.cpu_s == pytest.approx(sum(c.cpu_s for c in costs)) and s.cpu_s > 0
        assert s.cost == pytest.approx(s.cpu_s / 3600 * 2.0)
        assert s.models == 3 and s.chosen == "hashed-ngram-int8"
        assert s.task_cpu_s is not None and s.task_cpu_s >= s.cpu_s * 0.5
        # Not benchmarked: the bar cannot be judged, and the card-facing text says why.
        assert not s.meets_bar and "not benchmarked" in s.misses[0]
    # The first scenario encodes every text; the others find them in the cache.
    first, *rest = book.scenarios
    assert first.teacher_passes > 0 and first.cache_hits == 0
    assert all(s.teacher_passes == 0 and s.cache_hits > 0 for s in rest)
    summary = book.summary()
    assert summary["first_cpu_s"] == first.cpu_s
    median = statistics.median(s.cpu_s for s in rest)
    assert summary["rest_over_first"] == pytest.approx(median / first.cpu_s)

    out = tmp_path / "report"
    assert main(["report", "tiny-factory", "--out", str(out), "--price-per-core-hour", "2"]) == 0
    md = (out / "factory-report.md").read_text()
    assert "tiny-science" in md and "core-hours" in md and "% of the first" in md
    assert (out / "report-assets" / "factory-cost-curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (out / "factory-report.html").read_text()
    assert main(["report", "no-such-run"]) == 3
    assert main(["report", run.id, "--price-per-core-hour", "-1"]) == 2


def test_display_shows_scenarios_and_stages():
    import io

    from rich.console import Console

    from modelfab.factory.display import FactoryDisplay
    from modelfab.factory.task import TaskResult

    for live in (True, False):
        buffer = io.StringIO()
        console = Console(file=buffer, force_terminal=live, width=120)
        with FactoryDisplay(console=console, live=live) as display:
            display.start(total=3, done=1, name="tiny-factory")
            display.stage("tiny-games", "distill:hashed-ngram")
            display.finished(TaskResult("tiny-games", "k", "built", model_ids=["a", "b"]))
            display.finished(TaskResult("tiny-all", "k", "failed", error="InputError: bad\nmore"))
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())  # no ANSI codes
        assert "[2/3] tiny-games: built" in text and "2 models" in text
        assert "[3/3] tiny-all: failed: InputError: bad" in text and "more" not in text
        assert ("distill:hashed-ngram" in text) == live  # stages only on the live display


@pytest.mark.slow
def test_process_pool_gives_the_in_process_models(tmp_path, monkeypatch, tiny_teacher_dir):
    """--workers 2 (spawned processes) builds the same models as the in-process default."""
    monkeypatch.delenv("MODELFAB_REGISTRY_URL", raising=False)
    recipe = write_recipe(tmp_path / "r", tiny_teacher_dir)
    found = {}
    for workers in (1, 2):
        home = tmp_path / f"workers-{workers}"
        monkeypatch.setenv("MODELFAB_HOME", str(home))
        run = run_recipe(recipe, RunOptions(workers=workers, threads=1))
        assert run.status == "succeeded"
        assert [i["status"] for i in run.scenarios] == ["built"] * 3
        registry = Registry()
        found[workers] = models_and_metrics(registry)
        assert orphan_files(home, registry) == []
    assert len(found[2]) == 9
    assert found[2] == found[1]
