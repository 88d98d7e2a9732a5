"""Fit every requested strategy and keep the one with the best validation macro-F1."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelfab.adapt.base import AdaptData, Adapter
from modelfab.adapt.heads import LogisticHead, MLPHead
from modelfab.errors import InputError

STRATEGIES = {"logreg": LogisticHead, "mlp": MLPHead}


@dataclass
class Adaptation:
    best: Adapter
    scores: dict[str, float] = field(default_factory=dict)  # validation macro-F1 per strategy


def adapt(
    data: AdaptData, strategies: tuple[str, ...] = ("logreg", "mlp"), seed: int = 0
) -> Adaptation:
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise InputError(f"unknown adaptation strategy {unknown}; known: {sorted(STRATEGIES)}")
    fitted: list[Adapter] = []
    scores: dict[str, float] = {}
    for name in strategies:
        adapter = STRATEGIES[name]() if name != "mlp" else MLPHead(seed=seed)
        adapter.fit(data)
        scores[name] = float(adapter.val_f1_)  # type: ignore[attr-defined]
        fitted.append(adapter)
    best = max(fitted, key=lambda a: scores[a.name])
    return Adaptation(best=best, scores=scores)
