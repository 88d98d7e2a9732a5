"""The public API the CLI and other front ends call: datasets, scenarios, builds, models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelfab import paths
from modelfab.data.quality import quality_report
from modelfab.data.scenario import ScenarioSpec, materialize
from modelfab.data.versions import DatasetStore, DatasetVersion
from modelfab.errors import InputError
from modelfab.registry import Registry, ScenarioRecord

if TYPE_CHECKING:  # torch loads only where a body is distilled
    from modelfab.distill.body import Body, BodyConfig


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


def distill_body(
    corpus: str | Path,
    fields: list[str],
    config: BodyConfig,
    teacher: str | None = None,
    fmt: str | None = None,
) -> Body:
    """A student body distilled from `teacher` (a local HF model directory; None: the packaged
    MiniLM) over the texts of a corpus file's `fields` (`distill.body`), or the one already in
    the body store (MODELFAB_HOME/cache/bodies). Builds start their transformer student from it
    with `student_body` (`modelfab build --student-body`, a recipe's `build:`)."""
    from modelfab.data.connectors import load_table
    from modelfab.data.scenario import MAX_TEXT_CHARS, texts_of
    from modelfab.distill.body import BodyStore
    from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder

    frame = load_table(corpus, fmt)
    missing = [f for f in fields if f not in frame.columns]
    if not fields or missing:
        available = ", ".join(map(str, frame.columns))
        raise InputError(f"{corpus}: no text field {missing or fields} (available: {available})")
    encoder = HFTextEncoder(EncoderConfig(path=teacher, max_length=config.max_length))
    texts = texts_of(frame, fields, MAX_TEXT_CHARS)
    return BodyStore(paths.home() / "cache" / "bodies").get(encoder, texts, config)
