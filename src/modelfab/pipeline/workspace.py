"""The on-disk workspace of a build: staging, publishing, and cleaning up after crashes.

A build writes everything under `artifacts/.staging/<run_id>.<pid>/`. To publish, it first
writes a journal `artifacts/.pending/<run_id>.<pid>.json` naming the model folders it is about
to create, renames the staged folders to `artifacts/models/<model_id>/`, commits the registry
rows in one transaction, and deletes the journal. A build killed at any moment leaves at most a
staging folder and a journal whose process is dead; the next build removes the staging folder
and every journaled folder the registry does not reference. Folders of other builds (or of
another registry sharing the folder) are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from modelfab.atomic import write_text
from modelfab.registry import Registry


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_dead(path: Path) -> bool:
    """True when `path` is named `<run_id>.<pid>[.json]` and that process is gone."""
    pid_text = path.name.removesuffix(".json").rsplit(".", 1)[-1]
    return pid_text.isdigit() and not _alive(int(pid_text))


class Workspace:
    def __init__(self, artifacts: Path, run_id: str):
        self.models = artifacts / "models"
        tag = f"{run_id}.{os.getpid()}"
        self.staging = artifacts / ".staging" / tag
        self.journal = artifacts / ".pending" / f"{tag}.json"
        self.published: list[Path] = []
        self.committed = False  # set once the registry references the published folders
        self.models.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)

    def stage(self, name: str) -> Path:
        return self.staging / name

    def publish(self, staged: dict[str, Path]) -> dict[str, Path]:
        """Journal, then rename each staged folder to models/<model_id>; returns final paths."""
        write_text(self.journal, json.dumps(sorted(staged)))
        finals = {}
        for model_id, path in staged.items():
            final = self.models / model_id
            os.replace(path, final)
            self.published.append(final)
            finals[model_id] = final
        return finals

    def finish(self, succeeded: bool) -> None:
        """Drop staging and journal; on failure also the folders published by this build."""
        if not succeeded and not self.committed:
            for final in self.published:
                shutil.rmtree(final, ignore_errors=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()


def sweep_orphans(artifacts: Path, registry: Registry) -> list[Path]:
    """Remove what builds killed before finishing left behind and close their runs (see
    `Registry.close_interrupted_run`); returns the removed paths."""
    removed: list[Path] = []
    pending = artifacts / ".pending"
    for journal in sorted(pending.glob("*.json")) if pending.is_dir() else []:
        if not _owner_dead(journal):
            continue
        known = {m.id for m in registry.list_models()}
        for model_id in json.loads(journal.read_text()):
            folder = artifacts / "models" / model_id
            if model_id not in known and folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        journal.unlink()
    # After the journals: a run is closed once its folders are settled.
    staging = artifacts / ".staging"
    for entry in sorted(staging.iterdir()) if staging.is_dir() else []:
        if _owner_dead(entry):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
            registry.close_interrupted_run(entry.name.rsplit(".", 1)[0])
    return removed
