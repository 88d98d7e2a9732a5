"""Build options as a validated model: what `modelfab build` flags and a recipe's `build:` give.

One place turns these user-facing options into a `BuildConfig`, so the CLI and recipes cannot
drift apart.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelfab.errors import validated
from modelfab.pipeline.config import BuildConfig


class BuildOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teacher: str | None = None  # a local HF model directory; None: packaged all-MiniLM-L6-v2
    max_length: int = Field(default=64, ge=8, le=512)  # tokens the teacher reads
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    adapt: list[str] = Field(default_factory=lambda: ["auto"])
    budget_s: float | None = Field(default=None, gt=0)  # Optuna search of the strategies
    families: list[str] = Field(
        default_factory=lambda: ["transformer", "static-embedding", "hashed-ngram"]
    )
    layers: int = Field(default=2, ge=1)  # transformer student layers
    student_max_length: int = Field(default=32, ge=8, le=512)
    epochs: int = Field(default=3, ge=1)
    # A student body (`modelfab body`): the transformer student starts from it, not from the
    # teacher's lower layers; one body serves every scenario of a teacher.
    student_body: str | None = None
    # Optimizer steps every student trains for at least (None: each family's default).
    min_steps: int | None = Field(default=None, ge=0)
    bag_epochs: int | None = Field(default=None, ge=1)  # bag students (None: their default)
    compress: bool = True  # layer-dropped, pruned and other-precision variants
    bench: bool = True
    bench_threads: list[int] = Field(default_factory=lambda: [1, 2], min_length=1)
    bench_seconds: float = Field(default=4.0, gt=0)  # per model and thread count, at most
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_size_mb: float | None = Field(default=None, gt=0)
    min_f1: float | None = Field(default=None, ge=0, le=1)
    pool_labels: Literal["soft", "hard"] = "soft"
    target_precision: float = Field(default=0.9, gt=0, le=1)
    exclude_label_issues: bool = False

    @classmethod
    def parse(cls, values: dict) -> BuildOptions:
        """Validate `values`; the first problem becomes one InputError naming the option."""
        return validated(cls, values, "build option", show_input=True)

    def to_config(self) -> BuildConfig:
        from modelfab.bench.choose import Budget
        from modelfab.distill.transformer import TransformerStudentConfig
        from modelfab.pipeline.config import BenchConfig, LabelsConfig, TeacherConfig
        from modelfab.pipeline.variants import StudentsConfig

        students = StudentsConfig(families=tuple(self.families))
        bag: dict = {}
        if self.min_steps is not None:
            bag["min_steps"] = self.min_steps
        if self.bag_epochs is not None:
            bag["epochs"] = self.bag_epochs
        if bag:
            students = dataclasses.replace(
                students,
                static=dataclasses.replace(students.static, **bag),
                hashed=dataclasses.replace(students.hashed, **bag),
            )
        if not self.compress:
            students = StudentsConfig(
                families=students.families,
                static=students.static,
                hashed=students.hashed,
                compress=None,
                quantizations=("dynamic-int8",),
                optimizations=(),
            )
        transformer = TransformerStudentConfig(
            layers=self.layers,
            epochs=self.epochs,
            max_length=self.student_max_length,
            body=self.student_body,
        )
        if self.min_steps is not None:
            transformer = dataclasses.replace(transformer, min_steps=self.min_steps)
        return BuildConfig(
            teacher=TeacherConfig(
                path=self.teacher, max_length=self.max_length, precision=self.precision
            ),
            adapt=tuple(self.adapt),
            adapt_budget_s=self.budget_s,
            student=transformer,
            students=students,
            bench=BenchConfig(
                enabled=self.bench,
                threads=tuple(self.bench_threads),
                max_seconds=self.bench_seconds,
            ),
            budget=Budget(
                max_latency_ms=self.max_latency_ms, max_size_mb=self.max_size_mb, min_f1=self.min_f1
            ),
            labels=LabelsConfig(
                pool_labels=self.pool_labels,
                target_precision=self.target_precision,
                exclude_label_issues=self.exclude_label_issues,
            ),
        )
