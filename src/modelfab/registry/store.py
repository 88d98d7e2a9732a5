"""The registry: datasets, scenarios, runs, models, metrics and costs in one SQL database.

Every method opens and closes its own session and returns frozen dataclasses (or dicts), never
live ORM objects, so callers never hold a session or a lock. SQLite files use WAL and a busy
timeout so several processes (CLI, server, pipeline) can share one registry.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from numbers import Real
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session, sessionmaker

from modelfab import paths
from modelfab.errors import InputError, NotFoundError
from modelfab.registry.ledger import CostRecord
from modelfab.registry.schema import (
    MODEL_ROLES,
    RUN_STATUSES,
    Base,
    Cost,
    Dataset,
    Metric,
    Model,
    Run,
    Scenario,
    utcnow,
)

SQLITE_BUSY_TIMEOUT_S = 30


def _utc(ts: datetime) -> datetime:
    """SQLite drops the tzinfo of stored UTC timestamps; put it back."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DatasetRecord:
    id: str
    name: str
    source: str
    n_rows: int
    columns: list[str]
    path: str
    created_at: datetime


@dataclass(frozen=True)
class ScenarioRecord:
    id: str
    name: str
    dataset_id: str
    spec: dict[str, Any]
    quality: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class RunRecord:
    id: str
    scenario_id: str
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    config: dict[str, Any]


@dataclass(frozen=True)
class ModelRecord:
    id: str
    run_id: str
    scenario_id: str
    parent_id: str | None
    name: str
    role: str
    family: str
    recipe: dict[str, Any]
    artifact_path: str | None
    size_bytes: int | None
    created_at: datetime


@dataclass(frozen=True)
class CostEntry:
    """One stored cost row: a CostRecord plus where it belongs."""

    id: int
    run_id: str
    model_id: str | None
    stage: str
    cpu_s: float
    wall_s: float
    peak_rss_bytes: int
    labeled_examples: int
    teacher_forward_passes: int
    cache_hits: int

    def to_record(self) -> CostRecord:
        return CostRecord.from_dict(self.__dict__)


def _dataset(row: Dataset) -> DatasetRecord:
    return DatasetRecord(
        row.id, row.name, row.source, row.n_rows, list(row.columns), row.path, _utc(row.created_at)
    )


def _scenario(row: Scenario) -> ScenarioRecord:
    return ScenarioRecord(
        row.id, row.name, row.dataset_id, row.spec, row.quality, _utc(row.created_at)
    )


def _run(row: Run) -> RunRecord:
    return RunRecord(
        row.id,
        row.scenario_id,
        row.kind,
        row.status,
        _utc(row.started_at),
        row.finished_at and _utc(row.finished_at),
        row.error,
        row.config,
    )


def _model(row: Model) -> ModelRecord:
    return ModelRecord(
        row.id,
        row.run_id,
        row.scenario_id,
        row.parent_id,
        row.name,
        row.role,
        row.family,
        row.recipe,
        row.artifact_path,
        row.size_bytes,
        _utc(row.created_at),
    )


def _cost(row: Cost) -> CostEntry:
    return CostEntry(
        row.id,
        row.run_id,
        row.model_id,
        row.stage,
        row.cpu_s,
        row.wall_s,
        row.peak_rss_bytes,
        row.labeled_examples,
        row.teacher_forward_passes,
        row.cache_hits,
    )


def _cost_row(run_id: str, model_id: str | None, stage: str, cost: CostRecord) -> Cost:
    return Cost(
        run_id=run_id,
        model_id=model_id,
        stage=stage,
        cpu_s=cost.cpu_s,
        wall_s=cost.wall_s,
        peak_rss_bytes=cost.peak_rss_bytes,
        labeled_examples=cost.labeled_examples,
        teacher_forward_passes=cost.teacher_forward_passes,
        cache_hits=cost.cache_hits,
    )


def _metric_value(model_name: str, split: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InputError(
            f"metric {split}/{name} of model {model_name!r} must be a finite number, got {value!r}"
        )
    return float(value)


def _insert_model(
    s: Session,
    model_id: str,
    *,
    run_id: str,
    scenario_id: str,
    name: str,
    role: str,
    family: str,
    recipe: dict[str, Any] | None = None,
    parent_id: str | None = None,
    artifact_path: str | None = None,
    size_bytes: int | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    costs: Iterable[CostRecord] = (),
) -> None:
    """Add one model row with its metrics and costs to the open transaction `s`."""
    if parent_id is not None and s.get(Model, parent_id) is None:
        raise NotFoundError(f"parent model {parent_id!r} not found")
    s.add(
        Model(
            id=model_id,
            run_id=run_id,
            scenario_id=scenario_id,
            parent_id=parent_id,
            name=name,
            role=role,
            family=family,
            recipe=recipe or {},
            artifact_path=None if artifact_path is None else str(artifact_path),
            size_bytes=size_bytes,
        )
    )
    s.flush()  # the model row exists inside the transaction from here on
    for split, values in (metrics or {}).items():
        for metric, value in values.items():
            v = _metric_value(name, split, metric, value)
            s.add(Metric(model_id=model_id, split=split, name=metric, value=v))
    for cost in costs:
        s.add(_cost_row(run_id, model_id, cost.stage, cost))


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    in_memory = url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA foreign_keys=ON")  # as PostgreSQL would enforce them
        cur.close()

    return engine


class Registry:
    """Read and write the model registry. `url=None` uses `paths.registry_url()`."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or paths.registry_url()
        self._engine = _make_engine(self.url)
        Base.metadata.create_all(self._engine)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One transaction: committed if the block succeeds, rolled back whole if it raises."""
        with self._sessions() as session, session.begin():
            yield session

    # ---- datasets and scenarios -------------------------------------------------------------

    def upsert_dataset(
        self, id: str, name: str, source: str, n_rows: int, columns: list[str], path: str
    ) -> DatasetRecord:
        with self._tx() as s:
            row = s.get(Dataset, id)
            if row is None:
                row = Dataset(id=id)
                s.add(row)
            row.name, row.source, row.n_rows = name, source, int(n_rows)
            row.columns, row.path = list(columns), str(path)
            s.flush()
            return _dataset(row)

    def get_dataset(self, id: str) -> DatasetRecord:
        with self._sessions() as s:
            row = s.get(Dataset, id)
            if row is None:
                raise NotFoundError(f"dataset {id!r} not found")
            return _dataset(row)

    def upsert_scenario(
        self,
        id: str,
        name: str,
        dataset_id: str,
        spec: dict[str, Any],
        quality: dict[str, Any] | None = None,
        replace: bool = False,
    ) -> ScenarioRecord:
        """Insert or update scenario `id`. A name taken by another spec is an InputError, unless
        `replace`: then the old scenario keeps its id, runs and models under the name
        `name@<old id prefix>` and `name` points at the new spec."""
        with self._tx() as s:
            if s.get(Dataset, dataset_id) is None:
                raise NotFoundError(f"dataset {dataset_id!r} not found; register it first")
            clash = s.scalar(select(Scenario).where(Scenario.name == name, Scenario.id != id))
            if clash is not None and replace:
                clash.name = f"{name}@{clash.id[:12]}"
                s.flush()
            elif clash is not None:
                raise InputError(
                    f"scenario name {name!r} is already used by a different spec "
                    f"({clash.id[:12]}); choose another name or replace it (--replace)"
                )
            row = s.get(Scenario, id)
            if row is None:
                row = Scenario(id=id)
                s.add(row)
            row.name, row.dataset_id, row.spec, row.quality = name, dataset_id, spec, quality
            s.flush()
            return _scenario(row)

    def get_scenario(self, name_or_id: str) -> ScenarioRecord:
        with self._sessions() as s:
            row = s.get(Scenario, name_or_id) or s.scalar(
                select(Scenario).where(Scenario.name == name_or_id)
            )
            if row is None:
                names = s.scalars(select(Scenario.name).order_by(Scenario.name).limit(6)).all()
                known = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                raise NotFoundError(
                    f"scenario {name_or_id!r} not found; known: {known or '(none)'}"
                )
            return _scenario(row)

    def list_scenarios(self) -> list[ScenarioRecord]:
        with self._sessions() as s:
            return [_scenario(r) for r in s.scalars(select(Scenario).order_by(Scenario.name))]

    # ---- runs -------------------------------------------------------------------------------

    def start_run(self, scenario_id: str, kind: str, config: dict[str, Any] | None = None) -> str:
        run_id = uuid.uuid4().hex
        with self._tx() as s:
            if s.get(Scenario, scenario_id) is None:
                raise NotFoundError(f"scenario {scenario_id!r} not found")
            s.add(Run(id=run_id, scenario_id=scenario_id, kind=kind, config=config or {}))
        return run_id

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Close a run. A failed run also loses its model rows (costs are kept: work was done)."""
        if status not in RUN_STATUSES or status == "running":
            raise InputError(f"run status must be 'succeeded' or 'failed', got {status!r}")
        with self._tx() as s:
            row = s.get(Run, run_id)
            if row is None:
                raise NotFoundError(f"run {run_id!r} not found")
            row.status, row.error, row.finished_at = status, error, utcnow()
            if status == "failed":
                self._delete_run_models(s, run_id)

    def get_run(self, run_id: str) -> RunRecord:
        with self._sessions() as s:
            row = s.get(Run, run_id)
            if row is None:
                raise NotFoundError(f"run {run_id!r} not found")
            return _run(row)

    def list_runs(self, scenario: str | None = None) -> list[RunRecord]:
        query = select(Run).order_by(Run.started_at, Run.id)
        if scenario is not None:
            query = query.where(Run.scenario_id == self.get_scenario(scenario).id)
        with self._sessions() as s:
            return [_run(r) for r in s.scalars(query)]

    def delete_run_models(self, run_id: str) -> int:
        """Remove a run's models and their metrics; returns how many models were removed."""
        with self._tx() as s:
            return self._delete_run_models(s, run_id)

    @staticmethod
    def _delete_run_models(s: Session, run_id: str) -> int:
        ids = list(s.scalars(select(Model.id).where(Model.run_id == run_id)))
        if not ids:
            return 0
        outside = s.scalar(
            select(Model.id).where(Model.parent_id.in_(ids), Model.run_id != run_id).limit(1)
        )
        if outside is not None:
            raise InputError(
                f"cannot delete models of run {run_id[:12]}: model {outside[:12]} "
                "of another run descends from them"
            )
        # Costs stay with the run (the work was spent) but no longer point at a model.
        s.execute(update(Cost).where(Cost.model_id.in_(ids)).values(model_id=None))
        s.execute(delete(Metric).where(Metric.model_id.in_(ids)))
        s.execute(update(Model).where(Model.id.in_(ids)).values(parent_id=None))
        s.execute(delete(Model).where(Model.id.in_(ids)))
        return len(ids)

    # ---- models, metrics, costs -------------------------------------------------------------

    def add_model(
        self,
        *,
        run_id: str,
        scenario_id: str,
        name: str,
        role: str,
        family: str,
        recipe: dict[str, Any] | None = None,
        parent_id: str | None = None,
        artifact_path: str | None = None,
        size_bytes: int | None = None,
        metrics: dict[str, dict[str, float]] | None = None,
        costs: Iterable[CostRecord] = (),
        model_id: str | None = None,
    ) -> str:
        """Record a model, its metrics `{split: {name: value}}` and its costs in ONE transaction.

        Either everything appears or nothing does. Returns the model id (uuid4 hex by default).
        """
        fields = dict(locals())
        del fields["self"]
        return self.add_models([fields])[0]

    def add_models(self, models: list[dict[str, Any]]) -> list[str]:
        """Record several models (keyword dicts as for `add_model`, parents first) in ONE
        transaction: a build's teacher and student appear together or not at all."""
        for fields in models:
            if fields["role"] not in MODEL_ROLES:
                raise InputError(f"model role must be one of {MODEL_ROLES}, got {fields['role']!r}")
        ids = [fields.get("model_id") or uuid.uuid4().hex for fields in models]
        try:
            with self._tx() as s:
                for model_id, fields in zip(ids, models, strict=True):
                    _insert_model(
                        s, model_id, **{k: v for k, v in fields.items() if k != "model_id"}
                    )
        except DBIntegrityError as exc:
            names = ", ".join(repr(f["name"]) for f in models)
            raise InputError(
                f"could not register model {names}: {str(exc.orig).splitlines()[0]}"
            ) from exc
        return ids

    def get_model(self, id_or_prefix: str) -> ModelRecord:
        """Look a model up by full id or by a unique id prefix."""
        if not id_or_prefix:
            raise InputError("empty model id")
        with self._sessions() as s:
            row = s.get(Model, id_or_prefix)
            if row is not None:
                return _model(row)
            rows = s.scalars(
                select(Model).where(Model.id.startswith(id_or_prefix, autoescape=True)).limit(6)
            ).all()
            if not rows:
                raise NotFoundError(f"model {id_or_prefix!r} not found")
            if len(rows) > 1:
                ids = ", ".join(r.id[:12] for r in rows[:5])
                raise InputError(f"model id prefix {id_or_prefix!r} is ambiguous: {ids}, ...")
            return _model(rows[0])

    def list_models(self, scenario: str | None = None) -> list[ModelRecord]:
        """All models, oldest first; `scenario` (name or id) narrows to one scenario."""
        query = select(Model).order_by(Model.created_at, Model.id)
        if scenario is not None:
            query = query.where(Model.scenario_id == self.get_scenario(scenario).id)
        with self._sessions() as s:
            return [_model(r) for r in s.scalars(query)]

    def lineage(self, model_id: str) -> list[ModelRecord]:
        """The model, its parent, its parent's parent... up to the root."""
        chain = [self.get_model(model_id)]
        seen = {chain[0].id}
        with self._sessions() as s:
            while chain[-1].parent_id is not None:
                parent = s.get(Model, chain[-1].parent_id)
                if parent is None or parent.id in seen:  # FKs forbid the first; guard cycles
                    break
                seen.add(parent.id)
                chain.append(_model(parent))
        return chain

    def metrics(self, model_id: str) -> dict[str, dict[str, float]]:
        """`{split: {name: value}}` for one model (full id or unique prefix)."""
        full_id = self.get_model(model_id).id
        out: dict[str, dict[str, float]] = {}
        with self._sessions() as s:
            for m in s.scalars(select(Metric).where(Metric.model_id == full_id)):
                out.setdefault(m.split, {})[m.name] = m.value
        return out

    def record_cost(
        self, run_id: str, stage: str, cost: CostRecord, model_id: str | None = None
    ) -> None:
        """Record a stage's cost on its own (e.g. teacher labelling, not tied to one model)."""
        with self._tx() as s:
            if s.get(Run, run_id) is None:
                raise NotFoundError(f"run {run_id!r} not found")
            s.add(_cost_row(run_id, model_id, stage, cost))

    def costs(self, run_id: str | None = None, model_id: str | None = None) -> list[CostEntry]:
        query = select(Cost).order_by(Cost.id)
        if run_id is not None:
            query = query.where(Cost.run_id == run_id)
        if model_id is not None:
            query = query.where(Cost.model_id == model_id)
        with self._sessions() as s:
            return [_cost(r) for r in s.scalars(query)]
