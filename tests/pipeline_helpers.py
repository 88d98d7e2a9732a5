"""Shared set-up for pipeline and CLI tests: a tiny labeled JSONL and a fast build config."""

from __future__ import annotations

import json
import random
from pathlib import Path

from modelfab.compress.derive import CompressConfig
from modelfab.distill.bag import BagStudentConfig
from modelfab.distill.transformer import TransformerStudentConfig
from modelfab.pipeline.config import BenchConfig, BuildConfig, TeacherConfig
from modelfab.pipeline.variants import StudentsConfig

WORDS = {
    "games": ["fun", "puzzle", "game", "levels", "arcade", "play"],
    "science": ["molecular", "biology", "analysis", "toolkit", "physics", "data"],
    "editors": ["text", "editor", "syntax", "highlighting", "vim", "emacs"],
}


def write_dataset(path: Path, per_class: int = 24, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for label, words in WORDS.items():
        for i in range(per_class):
            text = " ".join(rng.choice(words) for _ in range(6))
            rows.append({"text": text, "label": label, "src": f"{label}-{i // 2}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


LEAN = StudentsConfig(
    families=("transformer",), compress=None, quantizations=("dynamic-int8",), optimizations=()
)
ALL_VARIANTS = StudentsConfig(
    static=BagStudentConfig(max_length=32, epochs=2, batch_size=8, min_steps=0),
    hashed=BagStudentConfig(
        max_length=32, epochs=2, batch_size=8, buckets=64, lr=3e-2, min_steps=0
    ),
    compress=CompressConfig(recovery_texts=16, importance_texts=8),
    optimizations=("basic",),
)


def fast_config(teacher_dir: Path, bench: bool = False, every_variant: bool = False) -> BuildConfig:
    """One 2-layer transformer student (int8), or every family and compression variant."""
    return BuildConfig(
        teacher=TeacherConfig(path=str(teacher_dir), max_length=32, precision="fp32"),
        adapt=("logreg",),
        student=TransformerStudentConfig(
            layers=2, epochs=2, max_length=32, batch_size=8, min_steps=0
        ),
        students=ALL_VARIANTS if every_variant else LEAN,
        bench=BenchConfig(enabled=bench, threads=(1,), max_seconds=0.4, b1_calls=10),
    )
