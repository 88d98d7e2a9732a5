"""The public API the CLI and other front ends call: datasets, scenarios, builds, models."""

from __future__ import annotations

from pathlib import Path

from modelfab import paths
from modelfab.data.quality import quality_report
from modelfab.data.scenario import ScenarioSpec, materialize
from modelfab.data.versions import DatasetStore, DatasetVersion
from modelfab.registry import Registry, ScenarioRecord


def import_data(
    path: str | Path,
    fmt: str | None = None,
    name: str | None = None,
    translations: Path | None = None,
    registry: Registry | None = None,
) -> DatasetVersion:
    """Import a file as an immutable, content-addressed dataset version and register it."""
    registry = registry or Registry()
    version = DatasetStore(paths.home()).import_file(
        path, fmt=fmt, name=name, translations=translations
    )
    _register(registry, version)
    return version


def _register(registry: Registry, version: DatasetVersion) -> None:
    """Mirror a dataset version into the registry (idempotent)."""
    columns = list(version.columns)
    registry.upsert_dataset(
        version.id, version.name, version.source, version.n_rows, columns, str(version.path)
    )


def list_datasets() -> list[DatasetVersion]:
    return DatasetStore(paths.home()).list()


def create_scenario(
    spec: ScenarioSpec, registry: Registry | None = None, replace: bool = False
) -> tuple[ScenarioRecord, dict]:
    """Resolve the dataset, materialize the scenario to check it, store spec + quality report."""
    registry = registry or Registry()
    store = DatasetStore(paths.home())
    version = store.get(spec.dataset)
    _register(registry, version)
    resolved = spec.model_copy(update={"dataset": version.id})
    data = materialize(resolved, store.load(version.id))
    report = quality_report(data)
    record = registry.upsert_scenario(
        resolved.fingerprint(),
        resolved.name,
        version.id,
        resolved.to_dict(),
        report,
        replace=replace,
    )
    return record, report
