"""The registry: datasets, scenarios, runs, models, metrics, costs and benchmark results in one
SQL database.

Every method opens and closes its own session and returns frozen dataclasses (or dicts), never
live ORM objects, so callers never hold a session or a lock. SQLite files use WAL and a busy
timeout so several processes (CLI, server, pipeline) can share one registry; a PostgreSQL URL
(`postgresql+psycopg://user:pw@host/db`) serves many machines. Either way tables are created
under a lock and upserts survive a concurrent insert of the same row.
"""

from __future__ import annotations

import functools
import json
import math
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from numbers import Real
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import (
    URL,
    Engine,
    create_engine,
    delete,
    event,
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import ArgumentError, DataError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session, sessionmaker

from modelfab import paths
from modelfab.errors import EnvironmentProblem, InputError, NotFoundError
from modelfab.registry.ledger import CostRecord
from modelfab.registry.schema import (
    MODEL_ROLES,
    RUN_STATUSES,
    Base,
    BenchResult,
    Cost,
    Dataset,
    FactoryRun,
    Metric,
    Model,
    Run,
    Scenario,
    Trial,
    utcnow,
)
from modelfab.sqlite_wal import enable_wal

SQLITE_BUSY_TIMEOUT_S = 30
PG_CONNECT_TIMEOUT_S = 10
UPSERT_ATTEMPTS = 5
SCHEMA_LOCK_KEY = 0x6D6F64656C666162  # "modelfab": one advisory lock while creating tables
URL_EXAMPLES = "sqlite:///path/registry.sqlite or postgresql+psycopg://user:password@host/db"
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary"}


def _utc(ts: datetime) -> datetime:
    """Timestamps in UTC: SQLite drops the tzinfo of stored UTC timestamps (put it back);
    PostgreSQL returns them in the session's time zone."""
    return ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


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
class FactoryRunRecord:
    id: str
    recipe_name: str
    recipe_sha: str
    status: str
    engine: str
    pid: int
    host: str
    started_at: datetime
    finished_at: datetime | None
    config: dict[str, Any]
    scenarios: list[dict[str, Any]]


def _factory_run(row: FactoryRun) -> FactoryRunRecord:
    return FactoryRunRecord(
        row.id,
        row.recipe_name,
        row.recipe_sha,
        row.status,
        row.engine,
        row.pid,
        row.host,
        _utc(row.started_at),
        row.finished_at and _utc(row.finished_at),
        dict(row.config),
        [dict(item) for item in row.scenarios],
    )


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


@dataclass(frozen=True)
class BenchResultRecord:
    """One stored benchmark row, with the model's and scenario's names when it has a model."""

    id: int
    model_id: str | None
    model_name: str | None
    scenario_name: str | None
    artifact: str
    artifact_sha: str | None
    kind: str
    backend: str
    hardware_id: str
    hardware: dict[str, Any]
    threads: int
    latency_b1_p50_ms: float
    latency_b1_p99_ms: float
    throughput_b32: float
    peak_rss_bytes: int | None
    load_s: float | None
    size_bytes: int | None
    flops_fraction_of_peak: float | None
    extra: dict[str, Any]
    created_at: datetime


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


def _bench_result(
    row: BenchResult, model_name: str | None, scenario_name: str | None
) -> BenchResultRecord:
    return BenchResultRecord(
        row.id,
        row.model_id,
        model_name,
        scenario_name,
        row.artifact,
        row.artifact_sha,
        row.kind,
        row.backend,
        row.hardware_id,
        row.hardware,
        row.threads,
        row.latency_b1_p50_ms,
        row.latency_b1_p99_ms,
        row.throughput_b32,
        row.peak_rss_bytes,
        row.load_s,
        row.size_bytes,
        row.flops_fraction_of_peak,
        row.extra,
        _utc(row.created_at),
    )


def _finite(what: str, value: Any, optional: bool = False) -> float | None:
    """`value` as a float, refusing NaN, infinities, bools and non-numbers (None if `optional`)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _json_object(what: str, value: dict[str, Any] | None) -> dict[str, Any]:
    """A plain-JSON copy of `value`, so the JSON column never fails at commit time."""
    try:
        return json.loads(json.dumps(value or {}, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} is not plain JSON: {exc}") from None


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


def _bench_row(fields: dict[str, Any], model_id: str | None) -> BenchResult:
    """A checked bench_results row; `model_id` already resolved to a full id (or None)."""
    threads = fields["threads"]
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"benchmark threads must be an integer >= 1, got {threads!r}")
    if not fields["hardware_id"]:
        raise InputError("benchmark result needs a hardware id")
    return BenchResult(
        model_id=model_id,
        artifact=str(fields["artifact"]),
        artifact_sha=fields.get("artifact_sha"),
        kind=str(fields["kind"]),
        backend=str(fields["backend"]),
        hardware_id=str(fields["hardware_id"]),
        hardware=_json_object("benchmark field hardware", fields["hardware"]),
        threads=threads,
        latency_b1_p50_ms=_finite("benchmark field latency_b1_p50_ms", fields["latency_b1_p50_ms"]),
        latency_b1_p99_ms=_finite("benchmark field latency_b1_p99_ms", fields["latency_b1_p99_ms"]),
        throughput_b32=_finite("benchmark field throughput_b32", fields["throughput_b32"]),
        peak_rss_bytes=_int_or_none(fields.get("peak_rss_bytes")),
        load_s=_finite("benchmark field load_s", fields.get("load_s"), optional=True),
        size_bytes=_int_or_none(fields.get("size_bytes")),
        flops_fraction_of_peak=_finite(
            "benchmark field flops_fraction_of_peak",
            fields.get("flops_fraction_of_peak"),
            optional=True,
        ),
        extra=_json_object("benchmark field extra", fields.get("extra")),
    )


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


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _parse_url(url: str) -> URL:
    """The URL parsed; `postgresql://` and `postgres://` mean the psycopg 3 driver modelfab ships
    (SQLAlchemy's own default for them is psycopg2)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InputError(
            f"registry URL {url.split('@')[-1]!r} is not a database URL; use {URL_EXAMPLES}"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _one_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _make_engine(url: str) -> Engine:
    """An engine for `url`; a bad URL or a missing driver is one InputError or
    EnvironmentProblem line, and so is a database that cannot be reached (at any later call)."""
    parsed = _parse_url(url)
    try:
        engine = _create_engine(parsed)
    except NoSuchModuleError:
        raise InputError(
            f"registry URL {_safe(parsed)!r}: unknown database kind {parsed.drivername!r}; "
            f"use {URL_EXAMPLES}"
        ) from None
    except ImportError as exc:
        module = exc.name or "?"
        hint = DRIVER_PACKAGES.get(module.split(".")[0], module)
        raise EnvironmentProblem(
            f"registry URL {_safe(parsed)!r} needs the Python module {module!r}: "
            f"pip install '{hint}'"
        ) from None

    @event.listens_for(engine, "handle_error")
    def _one_line_errors(context: ExceptionContext) -> None:
        if isinstance(context.sqlalchemy_exception, DataError):  # e.g. a string too long
            raise InputError(f"registry rejected a value: {_one_line(context.original_exception)}")
        connecting = context.connection is None  # the first connection attempt failed
        if context.is_disconnect or (
            connecting and isinstance(context.sqlalchemy_exception, OperationalError)
        ):
            raise EnvironmentProblem(
                f"cannot reach the registry database {_safe(parsed)}: "
                f"{_one_line(context.original_exception)}"
            )

    return engine


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "postgresql":
        args = {} if "connect_timeout" in url.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        return create_engine(url, pool_pre_ping=True, connect_args=args)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    in_memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        if not in_memory:
            enable_wal(cur, SQLITE_BUSY_TIMEOUT_S)
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")  # as PostgreSQL would enforce them
        cur.close()

    return engine


def _create_schema(engine: Engine) -> None:
    """Create missing tables. Several processes may open a new registry at once, so creation
    holds a lock: SQLite's write lock (BEGIN IMMEDIATE), a PostgreSQL advisory lock."""
    if set(Base.metadata.tables) <= set(inspect(engine).get_table_names()):
        return
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        Base.metadata.create_all(conn)
        conn.commit()


P = ParamSpec("P")
T = TypeVar("T")


def _retry_on_conflict(method: Callable[P, T]) -> Callable[P, T]:
    """For upserts: when another process inserts the same row between our read and our insert,
    the commit fails on a unique key; run again, and the row is then found and updated."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(UPSERT_ATTEMPTS):
            try:
                return method(*args, **kwargs)
            except DBIntegrityError as exc:
                if attempt == UPSERT_ATTEMPTS - 1:
                    raise InputError(f"registry write failed: {_one_line(exc)}") from exc
        raise AssertionError("unreachable")

    return wrapper


class Registry:
    """Read and write the model registry. `url=None` uses `paths.registry_url()`."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or paths.registry_url()
        self._engine = _make_engine(self.url)
        _create_schema(self._engine)
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

    @_retry_on_conflict
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

    @_retry_on_conflict
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

    def start_run(
        self,
        scenario_id: str,
        kind: str,
        config: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> str:
        run_id = run_id or uuid.uuid4().hex
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

    def close_interrupted_run(self, run_id: str) -> str | None:
        """Close a run whose process died while it was "running": "succeeded" when its models
        were committed (they are written in one transaction, so they are complete), else
        "failed". Returns the new status, or None when the run is unknown or already closed."""
        with self._tx() as s:
            row = s.get(Run, run_id)
            if row is None or row.status != "running":
                return None
            has_models = s.scalar(select(Model.id).where(Model.run_id == run_id).limit(1))
            row.status = "succeeded" if has_models else "failed"
            row.error = None if has_models else "interrupted: its process died"
            row.finished_at = utcnow()
            return row.status

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

    def add_models(
        self,
        models: list[dict[str, Any]],
        bench_results: list[dict[str, Any]] = (),  # type: ignore[assignment]
        run_costs: list[tuple[str, str, CostRecord]] = (),  # type: ignore[assignment]
    ) -> list[str]:
        """Record several models (keyword dicts as for `add_model`, parents first), their
        benchmark rows (as for `add_bench_result`, model_id a full id) and run-level costs
        (run_id, stage, cost) in ONE transaction: a build's models appear together, with
        everything measured about them, or not at all."""
        for fields in models:
            if fields["role"] not in MODEL_ROLES:
                raise InputError(f"model role must be one of {MODEL_ROLES}, got {fields['role']!r}")
        ids = [fields.get("model_id") or uuid.uuid4().hex for fields in models]
        bench_rows = [_bench_row(fields, fields.get("model_id")) for fields in bench_results]
        try:
            with self._tx() as s:
                for model_id, fields in zip(ids, models, strict=True):
                    _insert_model(
                        s, model_id, **{k: v for k, v in fields.items() if k != "model_id"}
                    )
                s.flush()
                s.add_all(bench_rows)
                for run_id, stage, cost in run_costs:
                    s.add(_cost_row(run_id, None, stage, cost))
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

    # ---- benchmark results (model by hardware) -----------------------------------------------

    # ---- hyperparameter-search trials -------------------------------------------------------

    def add_trials(self, run_id: str, trials: list[dict[str, Any]]) -> int:
        """Record a run's search trials (number, strategy, params, state, value, duration_s)."""
        with self._tx() as s:
            if s.get(Run, run_id) is None:
                raise NotFoundError(f"run {run_id!r} not found")
            for t in trials:
                value = _finite("trial value", t.get("value"), optional=True)
                s.add(
                    Trial(
                        run_id=run_id,
                        number=int(t["number"]),
                        strategy=str(t["strategy"]),
                        params=_json_object("trial params", t.get("params")),
                        state=str(t["state"]),
                        value=value,
                        duration_s=float(t.get("duration_s") or 0.0),
                    )
                )
        return len(trials)

    def trials(self, run_id: str) -> list[dict[str, Any]]:
        with self._tx() as s:
            rows = s.scalars(select(Trial).where(Trial.run_id == run_id).order_by(Trial.number))
            return [
                {
                    "number": r.number,
                    "strategy": r.strategy,
                    "params": r.params,
                    "state": r.state,
                    "value": r.value,
                    "duration_s": r.duration_s,
                }
                for r in rows
            ]

    def add_bench_result(
        self,
        *,
        artifact: str,
        kind: str,
        backend: str,
        hardware_id: str,
        hardware: dict[str, Any],
        threads: int,
        latency_b1_p50_ms: float,
        latency_b1_p99_ms: float,
        throughput_b32: float,
        model_id: str | None = None,
        artifact_sha: str | None = None,
        peak_rss_bytes: int | None = None,
        load_s: float | None = None,
        size_bytes: int | None = None,
        flops_fraction_of_peak: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Store one measurement (one artifact, one thread count, one machine); returns its id.

        `model_id` (full id or unique prefix) ties it to a registered model; None for a bundle
        benchmarked outside the registry.
        """
        fields = dict(locals())
        del fields["self"]
        return self.add_bench_results([fields])[0]

    def add_bench_results(self, results: list[dict[str, Any]]) -> list[int]:
        """Store several measurements (keyword dicts as for `add_bench_result`) in ONE
        transaction: a benchmark's rows for 1 and 2 threads appear together or not at all."""
        rows = [
            _bench_row(
                fields,
                None if fields.get("model_id") is None else self.get_model(fields["model_id"]).id,
            )
            for fields in results
        ]
        try:
            with self._tx() as s:
                s.add_all(rows)
                s.flush()
                return [row.id for row in rows]
        except DBIntegrityError as exc:  # the model was deleted in between
            raise InputError(
                f"could not store benchmark result: {str(exc.orig).splitlines()[0]}"
            ) from exc

    def bench_history(
        self,
        model: str | None = None,
        scenario: str | None = None,
        hardware: str | None = None,
        limit: int | None = 50,
    ) -> list[BenchResultRecord]:
        """Stored benchmark results, newest first.

        `model`: full id or unique prefix; `scenario`: name or id (results of its models);
        `hardware`: a hardware id or a prefix of one; `limit`: at most this many rows (None: all).
        """
        if limit is not None and limit < 1:
            raise InputError(f"limit must be >= 1, got {limit}")
        query = (
            select(BenchResult, Model.name, Scenario.name)
            .outerjoin(Model, BenchResult.model_id == Model.id)
            .outerjoin(Scenario, Model.scenario_id == Scenario.id)
            .order_by(BenchResult.created_at.desc(), BenchResult.id.desc())
        )
        if model is not None:
            query = query.where(BenchResult.model_id == self.get_model(model).id)
        if scenario is not None:
            query = query.where(Model.scenario_id == self.get_scenario(scenario).id)
        if hardware is not None:
            if not hardware:
                raise InputError("empty hardware id")
            query = query.where(BenchResult.hardware_id.startswith(hardware, autoescape=True))
        if limit is not None:
            query = query.limit(limit)
        with self._sessions() as s:
            return [_bench_result(row, m, sc) for row, m, sc in s.execute(query)]

    # ---- factory runs (modelfab run RECIPE) --------------------------------------------------

    def start_factory_run(
        self, recipe_name: str, recipe_sha: str, engine: str, pid: int, host: str, config: dict
    ) -> FactoryRunRecord:
        with self._tx() as s:
            row = FactoryRun(
                id=uuid.uuid4().hex,
                recipe_name=recipe_name,
                recipe_sha=recipe_sha,
                engine=engine,
                pid=pid,
                host=host,
                config=_json_object("factory run config", config),
                scenarios=[],
            )
            s.add(row)
            s.flush()
            return _factory_run(row)

    def update_factory_run(
        self,
        run_id: str,
        *,
        scenarios: list[dict[str, Any]] | None = None,
        status: str | None = None,
        pid: int | None = None,
        engine: str | None = None,
    ) -> FactoryRunRecord:
        """Replace a factory run's scenario list and/or set its status (a closed status stamps
        `finished_at`; "running" clears it) or the process that owns it."""
        if status is not None and status not in RUN_STATUSES:
            raise InputError(f"factory run status must be one of {RUN_STATUSES}, got {status!r}")
        with self._tx() as s:
            row = s.get(FactoryRun, run_id)
            if row is None:
                raise NotFoundError(f"factory run {run_id!r} not found")
            if scenarios is not None:
                row.scenarios = [_json_object("factory run scenario", x) for x in scenarios]
            if status is not None:
                row.status = status
                row.finished_at = None if status == "running" else utcnow()
            if pid is not None:
                row.pid = pid
            if engine is not None:
                row.engine = engine
            s.flush()
            return _factory_run(row)

    def get_factory_run(self, id_or_prefix: str) -> FactoryRunRecord:
        """A factory run by id, unique id prefix, or recipe name (its latest run)."""
        if not id_or_prefix:
            raise InputError("empty factory run id")
        with self._sessions() as s:
            row = s.get(FactoryRun, id_or_prefix)
            if row is None:
                rows = s.scalars(
                    select(FactoryRun)
                    .where(FactoryRun.id.startswith(id_or_prefix, autoescape=True))
                    .limit(2)
                ).all()
                if len(rows) > 1:
                    raise InputError(f"factory run id prefix {id_or_prefix!r} is ambiguous")
                row = rows[0] if rows else None
            if row is None:
                row = s.scalar(
                    select(FactoryRun)
                    .where(FactoryRun.recipe_name == id_or_prefix)
                    .order_by(FactoryRun.started_at.desc())
                    .limit(1)
                )
            if row is None:
                raise NotFoundError(f"factory run {id_or_prefix!r} not found")
            return _factory_run(row)

    def list_factory_runs(self, recipe_sha: str | None = None) -> list[FactoryRunRecord]:
        """Factory runs, oldest first; `recipe_sha` narrows to runs of one recipe text."""
        query = select(FactoryRun).order_by(FactoryRun.started_at, FactoryRun.id)
        if recipe_sha is not None:
            query = query.where(FactoryRun.recipe_sha == recipe_sha)
        with self._sessions() as s:
            return [_factory_run(r) for r in s.scalars(query)]
