"""Which bundles the server may host, by served name: the registry's models or a folder's.

A catalog is rescanned while the server runs, so newly registered models are picked up without
a restart. Requests only ever name a model; the path comes from here, never from a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelfab.export.heads import is_head_bundle
from modelfab.export.manifest import MANIFEST, MODEL, sha256_file

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
BACKBONES = "backbones"


@dataclass(frozen=True)
class Entry:
    name: str  # served name: URL-safe, unique in the catalog
    version: str  # changes when the bundle behind the name changes
    path: Path
    kind: str  # "bundle" (whole model) or "head" (over a shared backbone)


class Catalog(Protocol):
    backbones_dir: Path

    def scan(self) -> dict[str, Entry]: ...


def _entry(name: str, version: str, path: Path) -> Entry | None:
    """A servable folder: a head bundle, or a bundle with a model graph (not, say, a PyTorch
    teacher's artifact, which has a manifest but nothing onnxruntime can run)."""
    if is_head_bundle(path):
        return Entry(name, version, path, "head")
    if (path / MODEL).is_file():
        return Entry(name, version, path, "bundle")
    return None


def _selected(entries: dict[str, Entry], selection: tuple[str, ...], ids: dict[str, str]):
    """Keep the entries named in `selection` (served name, or a model-id prefix)."""
    if not selection:
        return entries
    keep = {}
    for name, entry in entries.items():
        model_id = ids.get(name, "")
        if name in selection or any(model_id.startswith(s) for s in selection if len(s) >= 6):
            keep[name] = entry
    return keep


class DirectoryCatalog:
    """Every bundle folder directly under `root` (served under the folder's name); shared
    backbones in `root/backbones/<sha256>/`."""

    def __init__(self, root: Path, selection: tuple[str, ...] = ()):
        self.root = Path(root)
        self.selection = selection
        self.backbones_dir = self.root / BACKBONES

    def scan(self) -> dict[str, Entry]:
        entries = {}
        for path in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            manifest = path / MANIFEST
            if path.name != BACKBONES and NAME.match(path.name) and manifest.is_file():
                entry = _entry(path.name, sha256_file(manifest)[:12], path)
                if entry is not None:
                    entries[path.name] = entry
        return _selected(entries, self.selection, {})


class RegistryCatalog:
    """Every registered model with a bundle, served as `<scenario>.<model name>` (the newest
    build wins a name); shared backbones in artifacts()/backbones/<sha256>/."""

    def __init__(self, selection: tuple[str, ...] = (), url: str | None = None):
        from modelfab import paths

        self.selection = selection
        self.url = url
        self.backbones_dir = paths.artifacts() / BACKBONES

    def scan(self) -> dict[str, Entry]:
        from modelfab.registry import Registry

        with Registry(self.url) as registry:
            scenarios = {s.id: s.name for s in registry.list_scenarios()}
            models = registry.list_models()  # oldest first: a newer build replaces the name
        entries: dict[str, Entry] = {}
        ids: dict[str, str] = {}
        for model in models:
            path = Path(model.artifact_path) if model.artifact_path else None
            if path is None or not (path / MANIFEST).is_file():
                continue
            name = f"{scenarios.get(model.scenario_id, 'unknown')}.{model.name}"
            entry = _entry(name, model.id[:12], path) if NAME.match(name) else None
            if entry is not None:
                entries[name] = entry
                ids[name] = model.id
        return _selected(entries, self.selection, ids)
