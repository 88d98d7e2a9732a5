"""Openers of fresh SQLite files for tests/test_sqlite_wal.py, run in spawned processes: kept
apart from the test module so a worker imports only what it opens."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def open_fresh(kind: str, root: str, worker: int, start_at: float) -> str | None:
    """Wait for `start_at`, then open the feature cache or the registry (`kind`) under `root`,
    a new file every worker opens at the same moment, and write to it; the error, if any."""
    from modelfab.registry import Registry
    from modelfab.teachers.cache import FeatureCache

    while time.time() < start_at:
        pass
    try:
        if kind == "cache":
            FeatureCache(Path(root)).put("t", {f"h{worker}": np.zeros(4, np.float32)})
        else:
            Path(root).mkdir(parents=True, exist_ok=True)
            with Registry(f"sqlite:///{root}/registry.sqlite") as registry:
                registry.upsert_dataset(str(worker) * 64, f"d{worker}", "test", 1, ["text"], "/d")
    except Exception as exc:  # reported to the test
        return f"{type(exc).__name__}: {exc}"
    return None
