"""`modelfab run RECIPE`: build every scenario of a recipe, skipping what is already built,
resuming a run that was killed, on the local engine or Ray.

1. Import the recipe's data (content-addressed: an unchanged file is the same version) and
   create its scenarios (an unchanged spec is the same scenario).
2. Give every scenario its build key (factory/keys.py) and a task; a task whose adapted
   teacher id is in the registry is skipped, since a build commits all its models at once.
3. Hand the tasks to the engine; record each result in the factory run's row as it arrives.

A run killed at any moment (SIGKILL included) leaves its factory run "running" with a dead
pid; running the same recipe again continues that row. The build it interrupted left only a
staging folder and maybe a journal: the next build sweeps them and closes its run (see
pipeline/workspace.py), then builds the scenario again with the same model ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from modelfab import paths
from modelfab.data.versions import DatasetStore
from modelfab.errors import InputError
from modelfab.factory.display import FactoryDisplay
from modelfab.factory.engines import make_engine
from modelfab.factory.keys import build_key, teacher_model_id
from modelfab.factory.recipe import LoadedRecipe, load_recipe
from modelfab.factory.task import ScenarioTask, TaskResult
from modelfab.pipeline.api import create_scenario, import_data
from modelfab.pipeline.workspace import _alive
from modelfab.registry import FactoryRunRecord, Registry


@dataclass
class RunOptions:
    engine: str = "local"
    workers: int = 1
    address: str | None = None  # Ray cluster address; None: a local Ray
    threads: int | None = None  # torch threads per scenario; None: CPU cores / workers
    teacher: str | None = None  # overrides every scenario's build.teacher
    only: list[str] = field(default_factory=list)  # build just these scenarios

    def threads_per_task(self) -> int:
        if self.threads is not None:
            if self.threads < 1:
                raise InputError(f"--threads must be >= 1, not {self.threads}")
            return self.threads
        return max(1, (os.cpu_count() or 1) // max(1, self.workers))


def recipe_sha(path: Path, options: RunOptions) -> str:
    """What identifies "the same run": the recipe's bytes and the options that change models."""
    digest = hashlib.sha256(path.read_bytes())
    digest.update(json.dumps({"teacher": options.teacher, "only": options.only}).encode())
    return digest.hexdigest()


def prepare(loaded: LoadedRecipe, options: RunOptions, registry: Registry) -> list[ScenarioTask]:
    """Import the data, create the scenarios, and one task per scenario (recipe order)."""
    for source in loaded.recipe.data:
        path = loaded.data_path(source)
        if not path.is_file():
            raise InputError(f"{loaded.path}: data {source.name!r}: {path} not found")
        import_data(path, name=source.name, registry=registry)
    store = DatasetStore(paths.home())
    planned = loaded.scenarios
    if options.only:
        names = {p.spec.name for p in planned}
        unknown = [n for n in options.only if n not in names]
        if unknown:
            raise InputError(f"--only: no scenario {unknown} in {loaded.path}")
        planned = [p for p in planned if p.spec.name in options.only]
    threads = options.threads_per_task()
    tasks = []
    for p in planned:
        resolved = p.spec.model_copy(update={"dataset": store.get(p.spec.dataset).id})
        scenario_id = resolved.fingerprint()
        known = {s.id: s.name for s in registry.list_scenarios()}
        if known.get(scenario_id) != resolved.name:
            create_scenario(p.spec, registry=registry, replace=True)
        build_options = p.options
        if options.teacher is not None:
            build_options = build_options.model_copy(update={"teacher": options.teacher})
        key = build_key(scenario_id, build_options.to_config())
        tasks.append(
            ScenarioTask(
                scenario=resolved.name,
                options=build_options.model_dump(mode="json"),
                key=key,
                threads=threads,
                home=str(paths.home()),
                registry_url=os.environ.get("MODELFAB_REGISTRY_URL"),
            )
        )
    return tasks


def _open_run(
    registry: Registry, name: str, sha: str, options: RunOptions
) -> tuple[FactoryRunRecord, bool]:
    """Continue the latest unfinished run of this recipe whose process is gone, else start one."""
    host = socket.gethostname()
    unfinished = [r for r in registry.list_factory_runs(recipe_sha=sha) if r.status == "running"]
    for r in unfinished:
        if r.host == host and _alive(r.pid) and r.pid != os.getpid():
            raise InputError(f"recipe {name!r} is already being run by process {r.pid}")
    config = {"workers": options.workers, "address": options.address, "teacher": options.teacher}
    if unfinished:
        run = registry.update_factory_run(unfinished[-1].id, pid=os.getpid(), engine=options.engine)
        return run, True
    return registry.start_factory_run(name, sha, options.engine, os.getpid(), host, config), False


def _items(run: FactoryRunRecord, tasks: list[ScenarioTask]) -> list[dict]:
    """The run's scenario list: finished entries of the same build key kept, the rest pending."""
    before = {item["scenario"]: item for item in run.scenarios}
    items = []
    for t in tasks:
        old = before.get(t.scenario)
        if old and old.get("key") == t.key and old.get("status") in ("built", "skipped"):
            items.append(old)
        else:
            items.append(
                {
                    "scenario": t.scenario,
                    "key": t.key,
                    "teacher_id": teacher_model_id(t.key),
                    "status": "pending",
                    "order": None,
                }
            )
    return items


def run_recipe(
    path: Path | str,
    options: RunOptions | None = None,
    display: FactoryDisplay | None = None,
    registry: Registry | None = None,
) -> FactoryRunRecord:
    """Build every scenario of the recipe at `path`; returns the factory run's final record."""
    options = options or RunOptions()
    engine = make_engine(options.engine, options.workers, options.address)
    path = Path(path)
    loaded = load_recipe(path)
    registry = registry or Registry()
    display = display or FactoryDisplay(live=False)
    tasks = prepare(loaded, options, registry)
    run, _resumed = _open_run(registry, loaded.recipe.name, recipe_sha(path, options), options)
    items = _items(run, tasks)
    registry.update_factory_run(run.id, scenarios=items, status="running")
    by_name = {item["scenario"]: item for item in items}
    todo = [t for t in tasks if by_name[t.scenario]["status"] == "pending"]
    order = sum(1 for item in items if item["order"] is not None)

    def on_done(result: TaskResult) -> None:
        nonlocal order
        item = by_name[result.scenario]
        if result.status != "failed":
            order += 1
            item["order"] = order
        item.update(
            status=result.status,
            run_id=result.run_id,
            task_wall_s=round(result.wall_s, 3),
            task_cpu_s=round(result.cpu_s, 3),
            error=result.error,
            models=len(result.model_ids),
        )
        registry.update_factory_run(run.id, scenarios=items)
        display.finished(result)

    with display:
        display.start(len(tasks), len(tasks) - len(todo), loaded.recipe.name)
        engine.run(todo, display.stage, on_done)
    failed = [item for item in items if item["status"] == "failed"]
    return registry.update_factory_run(
        run.id, scenarios=items, status="failed" if failed else "succeeded"
    )
