"""Fit every requested strategy and keep the one with the best validation macro-F1."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelfab.adapt.base import AdaptData, Adapter
from modelfab.adapt.finetune import FineTuneAdapter
from modelfab.adapt.heads import LogisticHead, MLPHead
from modelfab.errors import InputError

# name -> factory(teacher, seed); frozen-feature heads ignore the teacher.
STRATEGIES: dict[str, Callable[[Any, int], Adapter]] = {
    "logreg": lambda teacher, seed: LogisticHead(),
    "mlp": lambda teacher, seed: MLPHead(seed=seed),
    "finetune": lambda teacher, seed: FineTuneAdapter(teacher, seed=seed),
}


@dataclass
class Adaptation:
    best: Adapter
    scores: dict[str, float] = field(default_factory=dict)  # validation macro-F1 per strategy


def adapt(
    data: AdaptData,
    strategies: tuple[str, ...] = ("logreg", "mlp"),
    seed: int = 0,
    teacher=None,
) -> Adaptation:
    """Fit each strategy; "finetune" needs `teacher` (the HFTextEncoder to fine-tune)."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise InputError(f"unknown adaptation strategy {unknown}; known: {sorted(STRATEGIES)}")
    fitted: list[Adapter] = []
    scores: dict[str, float] = {}
    for name in strategies:
        if name == "finetune" and teacher is None:
            raise InputError("the finetune strategy needs a teacher to fine-tune")
        adapter = STRATEGIES[name](teacher, seed)
        adapter.fit(data)
        scores[name] = float(adapter.val_f1_)  # type: ignore[attr-defined]
        fitted.append(adapter)
    best = max(fitted, key=lambda a: scores[a.name])
    return Adaptation(best=best, scores=scores)
