"""What a factory run shows while it works: scenarios done of total, and each running
scenario's current stage. A live rich display on a terminal; one line per event elsewhere."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from modelfab.factory.task import TaskResult


class FactoryDisplay:
    def __init__(self, console: Console | None = None, live: bool | None = None) -> None:
        self.console = console or Console(stderr=True)
        if live is None:
            live = os.environ.get("MODELFAB_QUIET") != "1" and sys.stderr.isatty()
        self.live = live
        self._progress: Any = None
        self._overall: Any = None
        self._rows: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self.done = 0
        self.total = 0

    def __enter__(self) -> FactoryDisplay:
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)

    def start(self, total: int, done: int, name: str) -> None:
        self.total, self.done = total, done
        if self._progress is not None:
            self._overall = self._progress.add_task(f"{name}: scenarios", total=total)
            self._progress.update(self._overall, completed=done)
        else:
            self.console.print(
                escape(f"{name}: {total} scenarios, {done} already done"), highlight=False
            )

    def stage(self, scenario: str, stage: str) -> None:
        if scenario not in self._started:
            self._started[scenario] = time.perf_counter()
        if self._progress is None:
            return
        text = escape(f"  {scenario}: {stage}")
        if scenario not in self._rows:
            self._rows[scenario] = self._progress.add_task(text, total=None)
        else:
            self._progress.update(self._rows[scenario], description=text)

    def finished(self, result: TaskResult) -> None:
        self.done += 1
        if result.status == "failed":
            first = (result.error or "").splitlines()[0] if result.error else ""
            what = f"[red]failed[/red]: {escape(first)}"
        elif result.status == "skipped":
            what = "skipped (unchanged inputs and config; models in the registry)"
        else:
            what = f"built in {result.wall_s:.1f} s, {len(result.model_ids)} models"
        line = escape(f"[{self.done}/{self.total}] {result.scenario}: ") + what
        if self._progress is not None:
            row = self._rows.pop(result.scenario, None)
            if row is not None:
                self._progress.remove_task(row)
            self._progress.update(self._overall, completed=self.done)
            self._progress.console.print(line, highlight=False)
        else:
            self.console.print(line, soft_wrap=True, highlight=False)
