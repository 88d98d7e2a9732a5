"""Fit every requested strategy and keep the one with the best validation macro-F1."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelfab.adapt.base import AdaptData, Adapter
from modelfab.adapt.contrastive import ContrastiveAdapter
from modelfab.adapt.finetune import FineTuneAdapter
from modelfab.adapt.heads import LogisticHead, MLPHead
from modelfab.errors import InputError

# name -> factory(teacher, seed); frozen-feature heads ignore the teacher.
STRATEGIES: dict[str, Callable[[Any, int], Adapter]] = {
    "logreg": lambda teacher, seed: LogisticHead(),
    "mlp": lambda teacher, seed: MLPHead(seed=seed),
    "finetune": lambda teacher, seed: FineTuneAdapter(teacher, seed=seed),
    "contrastive": lambda teacher, seed: ContrastiveAdapter(teacher, seed=seed),
    "lora": lambda teacher, seed: ContrastiveAdapter(teacher, lora_rank=8, seed=seed),
}
NEEDS_TEACHER = ("finetune", "contrastive", "lora")  # these train the teacher body
AUTO = "auto"
# "auto" tunes the body when the median class has at most this many labeled examples: below it a
# head on frozen features is far behind contrastive tuning, above it the gap closes and the
# heads cost seconds instead of minutes (bench-results/fewshot.json, the learning curve).
FEW_SHOT_MAX = 16


def check_auto(strategies: tuple[str, ...]) -> None:
    """'auto' picks the strategies itself, so it cannot be listed with others."""
    if AUTO in strategies and tuple(strategies) != (AUTO,):
        raise InputError(f"'{AUTO}' picks the strategies itself; give it alone, not {strategies}")


def resolve(strategies: tuple[str, ...], y, teacher=None) -> tuple[str, ...]:
    """The strategies to fit: ("auto",) becomes ("contrastive",) for few labels per class and a
    teacher to tune, else the frozen-feature heads ("logreg", "mlp")."""
    check_auto(strategies)
    if AUTO not in strategies:
        return strategies
    counts = np.bincount(np.asarray(y, dtype=int))
    few = len(counts) > 0 and float(np.median(counts[counts > 0])) <= FEW_SHOT_MAX
    return ("contrastive",) if few and teacher is not None else ("logreg", "mlp")


@dataclass
class Adaptation:
    best: Adapter
    scores: dict[str, float] = field(default_factory=dict)  # validation macro-F1 per strategy
    trials: list[dict] = field(default_factory=list)  # hyperparameter-search trials, if any


def adapt(
    data: AdaptData,
    strategies: tuple[str, ...] = ("logreg", "mlp"),
    seed: int = 0,
    teacher=None,
) -> Adaptation:
    """Fit each strategy; the NEEDS_TEACHER ones need `teacher` (the HFTextEncoder to tune).
    `("auto",)` picks them from the number of labels per class (see `resolve`)."""
    strategies = resolve(strategies, data.train_y, teacher)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise InputError(f"unknown adaptation strategy {unknown}; known: {sorted(STRATEGIES)}")
    fitted: list[Adapter] = []
    scores: dict[str, float] = {}
    for name in strategies:
        if name in NEEDS_TEACHER and teacher is None:
            raise InputError(f"the {name} strategy needs a teacher to tune")
        adapter = STRATEGIES[name](teacher, seed)
        adapter.fit(data)
        scores[name] = float(adapter.val_f1_)  # type: ignore[attr-defined]
        fitted.append(adapter)
    best = max(fitted, key=lambda a: scores[a.name])
    return Adaptation(best=best, scores=scores)
