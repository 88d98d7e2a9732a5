"""One scenario of a factory run as a unit of work an engine can ship to any process.

A `ScenarioTask` is plain data (JSON-safe: it crosses process and Ray boundaries); `run_task`
runs it: skip when the registry already holds the models of its build key, else build. Every
engine calls the same function, so every engine produces the same models.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

from modelfab.errors import ModelfabError


@dataclass
class ScenarioTask:
    scenario: str
    options: dict[str, Any]  # BuildOptions, dumped
    key: str  # factory/keys.build_key
    threads: int  # torch threads: fixed, so results do not depend on the engine
    home: str  # MODELFAB_HOME of the run (a Ray worker may start without it)
    registry_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskResult:
    scenario: str
    key: str
    status: str  # "built", "skipped" or "failed"
    run_id: str | None = None  # the build run that made the models (an earlier one if skipped)
    teacher_id: str | None = None
    model_ids: list[str] = field(default_factory=list)
    wall_s: float = 0.0  # the whole task: data, split, every stage, registry writes
    cpu_s: float = 0.0  # CPU of this process (and its waited-for children) over the task
    error: str | None = None
    pid: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _environment(task: ScenarioTask):
    """The run's MODELFAB_HOME / registry URL and torch thread count, restored afterwards."""
    import torch

    saved = {k: os.environ.get(k) for k in ("MODELFAB_HOME", "MODELFAB_REGISTRY_URL")}
    threads = torch.get_num_threads()
    os.environ["MODELFAB_HOME"] = task.home
    if task.registry_url:
        os.environ["MODELFAB_REGISTRY_URL"] = task.registry_url
    torch.set_num_threads(task.threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_task(task: ScenarioTask) -> TaskResult:
    """Build one scenario unless its models exist; errors come back in the result."""
    import psutil

    from modelfab.factory.keys import teacher_model_id
    from modelfab.factory.options import BuildOptions
    from modelfab.pipeline.build import build
    from modelfab.registry import Registry
    from modelfab.registry.ledger import _cpu_seconds

    proc = psutil.Process()
    started, cpu0 = time.perf_counter(), _cpu_seconds(proc)
    teacher_id = teacher_model_id(task.key)
    result = TaskResult(task.scenario, task.key, "failed", teacher_id=teacher_id, pid=os.getpid())
    with _environment(task):
        registry = Registry()
        try:
            done = next(
                (m for m in registry.list_models(task.scenario) if m.id == teacher_id), None
            )
            if done is not None:
                result.status, result.run_id = "skipped", done.run_id
            else:
                config = BuildOptions.parse(task.options).to_config()
                built = build(task.scenario, config, registry=registry, key=task.key)
                result.status, result.run_id = "built", built.run_id
            result.model_ids = [
                m.id for m in registry.list_models(task.scenario) if m.run_id == result.run_id
            ]
        except ModelfabError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # one scenario's bug must not stop the factory
            result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        finally:
            registry.close()
    result.wall_s = time.perf_counter() - started
    result.cpu_s = _cpu_seconds(proc) - cpu0
    return result


def run_task_dict(task: dict[str, Any]) -> dict[str, Any]:
    """`run_task` on plain dicts, for engines that ship JSON-like values (Ray, process pools)."""
    return run_task(ScenarioTask(**task)).to_dict()
