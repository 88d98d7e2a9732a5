"""Execution engines: where a factory run's scenario tasks run.

- `local` (default): in this process, one scenario after another (`workers=1`), or a pool of
  `workers` spawned processes.
- `ray`: each scenario is a Ray task, on the cluster at `address` or on a local Ray started
  for the run. Workers must see the same MODELFAB_HOME (a shared file system) and registry.

Every engine runs `task.run_task` with the same fixed torch thread count, so the same recipe
gives the same models (ids and metrics) on every engine.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from modelfab.errors import EnvironmentProblem, InputError
from modelfab.factory.task import ScenarioTask, TaskResult, run_task, run_task_dict

StageFn = Callable[[str, str], None]  # (scenario, stage)
DoneFn = Callable[[TaskResult], None]

ENGINES = ("local", "ray")


class Engine(Protocol):
    name: str

    def run(self, tasks: list[ScenarioTask], on_stage: StageFn, on_done: DoneFn) -> None: ...


@dataclass
class LocalEngine:
    workers: int = 1
    name: str = "local"

    def run(self, tasks: list[ScenarioTask], on_stage: StageFn, on_done: DoneFn) -> None:
        if self.workers <= 1:
            from modelfab.progress import on_stage as listen

            for task in tasks:
                with listen(lambda stage, s=task.scenario: on_stage(s, stage)):  # type: ignore[misc]
                    on_done(run_task(task))
            return
        self._pool(tasks, on_stage, on_done)

    def _pool(self, tasks: list[ScenarioTask], on_stage: StageFn, on_done: DoneFn) -> None:
        ctx = mp.get_context("spawn")  # no fork of a process holding torch threads and SQLite
        with ctx.Manager() as manager:
            self._pool_with(tasks, on_stage, on_done, ctx, manager.Queue())

    def _pool_with(
        self, tasks: list[ScenarioTask], on_stage: StageFn, on_done: DoneFn, ctx: Any, events: Any
    ) -> None:
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                try:
                    scenario, stage = events.get(timeout=0.2)
                except queue_mod.Empty:
                    continue
                on_stage(scenario, stage)

        reader = threading.Thread(target=drain, name="modelfab-stages", daemon=True)
        reader.start()
        try:
            with ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_init_worker
            ) as pool:
                pending = {pool.submit(_pool_task, t.to_dict(), events): t for t in tasks}
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        pending.pop(future)
                        on_done(TaskResult(**future.result()))
        finally:
            stop.set()
            reader.join()


def _init_worker() -> None:
    import os

    os.environ.setdefault("MODELFAB_QUIET", "1")  # no progress bars from worker processes


def _pool_task(task: dict[str, Any], events: Any) -> dict[str, Any]:
    from modelfab.progress import on_stage

    with on_stage(lambda stage: events.put((task["scenario"], stage))):
        return run_task_dict(task)


@dataclass
class RayEngine:
    address: str | None = None  # None: start a local Ray for this run
    workers: int = 1  # concurrent tasks on a local Ray
    name: str = "ray"

    def run(self, tasks: list[ScenarioTask], on_stage: StageFn, on_done: DoneFn) -> None:
        try:
            import ray
        except ImportError:
            raise EnvironmentProblem(
                "--engine ray needs Ray: pip install 'modelfab[ray]' (or 'ray>=2.40,<3')"
            ) from None
        if not tasks:
            return
        started_here = not ray.is_initialized()
        if started_here:
            env = {"MODELFAB_QUIET": "1"}
            kwargs: dict[str, Any] = {
                "runtime_env": {"env_vars": env},
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if self.address is None:
                kwargs["num_cpus"] = max(1, self.workers) * max(t.threads for t in tasks)
            ray.init(address=self.address, **kwargs)
        try:
            remote = ray.remote(run_task_dict)
            refs = {}
            for t in tasks:
                refs[remote.options(num_cpus=t.threads, max_retries=0).remote(t.to_dict())] = t
                on_stage(t.scenario, "submitted to Ray")
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                for ref in done:
                    refs.pop(ref)
                    on_done(TaskResult(**ray.get(ref)))
        finally:
            if started_here:
                ray.shutdown()


def make_engine(name: str, workers: int = 1, address: str | None = None) -> Engine:
    if workers < 1:
        raise InputError(f"--workers must be >= 1, not {workers}")
    if name == "local":
        if address is not None:
            raise InputError("--address is for --engine ray")
        return LocalEngine(workers=workers)
    if name == "ray":
        return RayEngine(address=address, workers=workers)
    raise InputError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
