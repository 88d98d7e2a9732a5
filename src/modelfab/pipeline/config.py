"""Typed configuration of one build, split by stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from modelfab.distill.transformer import TransformerStudentConfig


@dataclass
class TeacherConfig:
    path: str | None = None  # a local HF model directory; None: packaged all-MiniLM-L6-v2
    max_length: int = 64  # summary + start of description; cost grows linearly with it
    precision: str = "auto"  # "auto" (measure on this CPU), "fp32" or "bf16"


@dataclass
class BenchConfig:
    enabled: bool = True
    threads: int = 1
    max_seconds: float = 6.0  # per model and phase budget; see bench.latency
    b1_calls: int = 200


@dataclass
class BuildConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    adapt: tuple[str, ...] = ("logreg", "mlp")
    student: TransformerStudentConfig = field(default_factory=TransformerStudentConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def to_dict(self) -> dict:
        return asdict(self)
