"""Typed configuration of one build, split by stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from modelfab.bench.choose import Budget
from modelfab.distill.transformer import TransformerStudentConfig
from modelfab.errors import InputError
from modelfab.pipeline.variants import StudentsConfig


@dataclass
class TeacherConfig:
    path: str | None = None  # a local HF model directory; None: packaged all-MiniLM-L6-v2
    max_length: int = 64  # summary + start of description; cost grows linearly with it
    precision: str = "auto"  # "auto" (measure on this CPU), "fp32" or "bf16"

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise InputError(f"precision must be auto, fp32 or bf16, not {self.precision!r}")
        if not 8 <= self.max_length <= 512:
            raise InputError(f"teacher max_length must be in 8..512, not {self.max_length}")


@dataclass
class BenchConfig:
    enabled: bool = True
    threads: tuple[int, ...] = (1, 2)  # the first is the headline figure and drives the choice
    max_seconds: float = 4.0  # per model and thread count; see bench.latency
    b1_calls: int = 200

    def __post_init__(self) -> None:
        if isinstance(self.threads, int):
            self.threads = (self.threads,)
        if not self.threads or min(self.threads) < 1 or self.max_seconds <= 0 or self.b1_calls < 1:
            raise InputError("bench needs threads >= 1, max_seconds > 0 and b1_calls >= 1")


@dataclass
class LabelsConfig:
    """How the build treats labels: the teacher's pool labels and suspect human labels."""

    pool_labels: str = "soft"  # "soft": teacher distributions (KD); "hard": accepted labels only
    target_precision: float = 0.9  # per-class confidence thresholds are set for this precision
    exclude_label_issues: bool = False  # drop train rows cleanlab flags before adapting

    def __post_init__(self) -> None:
        if self.pool_labels not in ("soft", "hard"):
            raise InputError(f"pool_labels must be soft or hard, not {self.pool_labels!r}")
        if not 0 < self.target_precision <= 1:
            raise InputError(f"target_precision must be in (0, 1], not {self.target_precision}")


@dataclass
class BuildConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # "auto": contrastive body tuning for few labels per class, frozen-feature heads otherwise.
    adapt: tuple[str, ...] = ("auto",)
    adapt_budget_s: float | None = None  # set: Optuna searches the strategies for this long
    student: TransformerStudentConfig = field(default_factory=TransformerStudentConfig)
    students: StudentsConfig = field(default_factory=StudentsConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    budget: Budget = field(default_factory=Budget)
    labels: LabelsConfig = field(default_factory=LabelsConfig)

    def __post_init__(self) -> None:
        from modelfab.adapt.select import AUTO, STRATEGIES, check_auto

        if self.budget.max_latency_ms is not None and not self.bench.enabled:
            raise InputError("a latency budget needs the benchmark: drop --no-bench")
        if self.adapt_budget_s is not None:
            from modelfab.adapt.search import SEARCHABLE

            if not self.adapt_budget_s > 0:
                raise InputError(
                    f"the adaptation budget must be > 0 seconds, not {self.adapt_budget_s}"
                )
            fixed = [a for a in self.adapt if a not in (*SEARCHABLE, AUTO)]
            if fixed:
                raise InputError(
                    f"--budget-s searches {list(SEARCHABLE)}; {fixed} have no search space"
                )
        unknown = [a for a in self.adapt if a not in STRATEGIES and a != AUTO]
        if unknown or not self.adapt:
            raise InputError(
                f"unknown adaptation strategy {unknown}; known: {AUTO}, {', '.join(STRATEGIES)}"
            )
        check_auto(self.adapt)

    def to_dict(self) -> dict:
        return asdict(self)
