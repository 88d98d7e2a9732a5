"""Measuring what a stage costs: CPU seconds, wall seconds, peak memory and work counters.

    with Meter("distill") as m:
        ...
        m.add(teacher_forward_passes=10, cache_hits=3)
        m.labeled_examples = 120
    m.record  # -> CostRecord

What is measured, and its limits:
- cpu_s: user + system time of this process and of its *terminated, waited-for* children
  (psutil `cpu_times()`), as a delta over the block. It is process-wide: work done by other
  threads during the block counts too.
- wall_s: `time.perf_counter()` delta.
- peak_rss_bytes: the largest resident set size seen during the block. A background thread
  samples RSS every `interval_s` (50 ms). `ru_maxrss` cannot be used directly because it is the
  process's lifetime maximum, not the stage's; but when it rose during the block, the process
  set a new all-time high inside the block, so that value is the stage's exact peak and covers
  short spikes the sampler missed. The result is never above `ru_maxrss`.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

import psutil

try:
    import resource
except ImportError:  # Windows has no `resource`; the sampler alone is used there.
    resource = None  # type: ignore[assignment]

COUNTERS = ("labeled_examples", "teacher_forward_passes", "cache_hits")


@dataclass
class CostRecord:
    """What one stage cost. Counters are work units the stage reports itself."""

    stage: str
    cpu_s: float
    wall_s: float
    peak_rss_bytes: int
    labeled_examples: int = 0
    teacher_forward_passes: int = 0
    cache_hits: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _max_rss_bytes() -> int | None:
    """Lifetime peak RSS of this process (`ru_maxrss` is KiB on Linux, bytes on macOS)."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


class Meter:
    """Context manager that measures one stage; read `record` after the block exits."""

    def __init__(self, stage: str, interval_s: float = 0.05) -> None:
        if not stage:
            raise ValueError("Meter needs a stage name")
        self.stage = stage
        self.interval_s = interval_s
        self.labeled_examples = 0
        self.teacher_forward_passes = 0
        self.cache_hits = 0
        self._proc = psutil.Process()
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._record: CostRecord | None = None

    def add(self, **counts: int) -> None:
        """Add to the work counters: labeled_examples, teacher_forward_passes, cache_hits."""
        unknown = set(counts) - set(COUNTERS)
        if unknown:
            raise TypeError(f"unknown cost counter(s) {sorted(unknown)}; known: {COUNTERS}")
        for name, n in counts.items():
            setattr(self, name, getattr(self, name) + int(n))

    def _sample(self) -> None:
        rss = self._proc.memory_info().rss
        if rss > self._peak:
            self._peak = rss

    def _run_sampler(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> Meter:
        from modelfab.progress import stage_started

        stage_started(self.stage)
        self._record = None
        self._peak = 0
        self._stop.clear()
        self._maxrss0 = _max_rss_bytes()
        self._sample()
        self._cpu0 = _cpu_seconds(self._proc)
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(
            target=self._run_sampler, name="modelfab-meter", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        wall = time.perf_counter() - self._t0
        cpu = _cpu_seconds(self._proc) - self._cpu0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        peak = self._peak
        maxrss1 = _max_rss_bytes()
        if maxrss1 is not None and self._maxrss0 is not None:
            if maxrss1 > self._maxrss0:
                peak = max(peak, maxrss1)  # a new lifetime high was set inside this block
            peak = min(peak, maxrss1)  # ceiling: a stage cannot exceed the lifetime peak
        self._record = CostRecord(
            stage=self.stage,
            cpu_s=max(cpu, 0.0),
            wall_s=wall,
            peak_rss_bytes=int(peak),
            labeled_examples=self.labeled_examples,
            teacher_forward_passes=self.teacher_forward_passes,
            cache_hits=self.cache_hits,
        )

    @property
    def record(self) -> CostRecord:
        if self._record is None:
            raise RuntimeError(f"Meter({self.stage!r}).record is only available after the block")
        return self._record
