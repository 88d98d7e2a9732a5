"""Progress bars for long steps (rich), silenced with MODELFAB_QUIET=1 or when not on a terminal."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def _enabled() -> bool:
    return os.environ.get("MODELFAB_QUIET") != "1" and sys.stderr.isatty()


@contextlib.contextmanager
def track(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`; shows a transient bar on a terminal, does nothing elsewhere."""
    if not _enabled() or total <= 0:
        yield lambda n: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def track_items(items: list, description: str) -> Iterator:
    """Iterate `items` with a progress bar (see `track`)."""
    with track(description, len(items)) as advance:
        for item in items:
            yield item
            advance(1)


# Stage events: every metered stage (registry.ledger.Meter) announces itself here, so a
# front end (the factory's progress display) can show which stage each scenario is in.
_stage_listeners: list[Callable[[str], None]] = []


@contextlib.contextmanager
def on_stage(callback: Callable[[str], None]) -> Iterator[None]:
    """Call `callback(stage)` whenever a metered stage starts inside the block."""
    _stage_listeners.append(callback)
    try:
        yield
    finally:
        _stage_listeners.remove(callback)


def stage_started(stage: str) -> None:
    for callback in list(_stage_listeners):
        callback(stage)
