"""Registry tables: datasets, scenarios, runs, models (with lineage), metrics, costs,
hyperparameter-search trials and benchmark results (model by hardware).

Portable SQLAlchemy 2 declarative ORM: plain String/Integer/Float/DateTime/Text columns and
`sqlalchemy.JSON`, nothing SQLite-only, so the same schema runs on PostgreSQL.
Timestamps are stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_STATUSES = ("running", "succeeded", "failed")
MODEL_ROLES = ("teacher", "student", "baseline")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # content hash
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(1000))
    n_rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[str]] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Scenario(Base):
    __tablename__ = "scenarios"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # spec fingerprint
    name: Mapped[str] = mapped_column(String(200), unique=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    spec: Mapped[dict[str, Any]]
    quality: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    scenario_id: Mapped[str] = mapped_column(ForeignKey("scenarios.id"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]]


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    scenario_id: Mapped[str] = mapped_column(ForeignKey("scenarios.id"), index=True)
    # Lineage: a student's parent is the adapted teacher; an int8 export's parent is the student.
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("models.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    family: Mapped[str] = mapped_column(String(100))
    recipe: Mapped[dict[str, Any]]
    artifact_path: Mapped[str | None] = mapped_column(String(1000))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("model_id", "split", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    split: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)


class Cost(Base):
    __tablename__ = "costs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id"), index=True)
    stage: Mapped[str] = mapped_column(String(100))
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    wall_s: Mapped[float] = mapped_column(Float, default=0.0)
    peak_rss_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    labeled_examples: Mapped[int] = mapped_column(Integer, default=0)
    teacher_forward_passes: Mapped[int] = mapped_column(Integer, default=0)
    cache_hits: Mapped[int] = mapped_column(Integer, default=0)


class Trial(Base):
    """One hyperparameter-search trial of a run's adaptation (Optuna), pruned ones included."""

    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("run_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(50))
    params: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20))  # complete, pruned, fail
    value: Mapped[float | None] = mapped_column(Float)  # validation macro-F1
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BenchResult(Base):
    """One benchmark measurement of one artifact at one thread count on one machine.

    `model_id` is empty for a bundle benchmarked outside the registry (and becomes empty when
    its model is deleted: the measurement of the artifact stays true). `hardware_id` is the hash
    of the stable part of `hardware` (see `modelfab.bench.results.hardware_id`), so results from
    the same machine group together while `hardware` keeps the full fingerprint, library versions
    included.
    """

    __tablename__ = "bench_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str | None] = mapped_column(
        ForeignKey("models.id", ondelete="SET NULL"), index=True
    )
    artifact: Mapped[str] = mapped_column(String(1000))  # bundle or teacher directory
    artifact_sha: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # "bundle" or "teacher"
    backend: Mapped[str] = mapped_column(String(50))  # "onnxruntime", "torch-fp32"
    hardware_id: Mapped[str] = mapped_column(String(64), index=True)
    hardware: Mapped[dict[str, Any]]
    threads: Mapped[int] = mapped_column(Integer)
    latency_b1_p50_ms: Mapped[float] = mapped_column(Float)
    latency_b1_p99_ms: Mapped[float] = mapped_column(Float)
    throughput_b32: Mapped[float] = mapped_column(Float)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    load_s: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    flops_fraction_of_peak: Mapped[float | None] = mapped_column(Float)
    extra: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FactoryRun(Base):
    """One `modelfab run RECIPE`: which scenarios it built, in which order, on which engine.

    `scenarios` is a list of `{scenario, key, teacher_id, run_id, order, status, skipped}`,
    written by the one process that orchestrates the run; a resumed run continues its row.
    """

    __tablename__ = "factory_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    recipe_name: Mapped[str] = mapped_column(String(200), index=True)
    recipe_sha: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    engine: Mapped[str] = mapped_column(String(50))
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    config: Mapped[dict[str, Any]]
    scenarios: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
