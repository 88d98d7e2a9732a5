"""The on-disk workspace of a build: staging, final artifact folders, orphan sweeping.

A build writes everything under `artifacts/.staging/<run_id>.<pid>/` and moves each finished
artifact to `artifacts/models/<model_id>/` just before its registry row is committed. A build
killed at any moment leaves at most a staging folder, which the next build removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from modelfab.registry import Registry


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Workspace:
    def __init__(self, artifacts: Path, run_id: str):
        self.models = artifacts / "models"
        self.staging_root = artifacts / ".staging"
        self.staging = self.staging_root / f"{run_id}.{os.getpid()}"
        self.models.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)

    def stage(self, name: str) -> Path:
        return self.staging / name

    def final(self, model_id: str) -> Path:
        return self.models / model_id

    def commit(self, staged: Path, model_id: str) -> Path:
        """Move a finished staged artifact to its final place (an atomic rename)."""
        final = self.final(model_id)
        os.replace(staged, final)
        return final

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def sweep_orphans(artifacts: Path, registry: Registry) -> list[Path]:
    """Remove staging folders of dead builds and, when no other build is alive, model folders
    that no registry row references (left by a build killed between rename and commit)."""
    removed: list[Path] = []
    staging_root = artifacts / ".staging"
    live_other = False
    if staging_root.is_dir():
        for entry in staging_root.iterdir():
            pid_text = entry.name.rsplit(".", 1)[-1]
            if pid_text.isdigit() and _alive(int(pid_text)):
                live_other = live_other or int(pid_text) != os.getpid()
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    models_dir = artifacts / "models"
    if not live_other and models_dir.is_dir():
        known = {m.id for m in registry.list_models()}
        for entry in models_dir.iterdir():
            if entry.name not in known:
                with contextlib.suppress(OSError):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed.append(entry)
    return removed
