"""Stratified splitting that never puts one group in two splits.

Stratified row splits are the special case where every row is its own group, so one routine
serves both. It follows StratifiedGroupKFold's idea: place groups largest first (random order
among equal sizes) into whichever split is furthest below its per-class target, so each split
gets close to its share of every class while groups stay whole.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

SPLITS = ("train", "val", "test")


def group_stratified_assign(
    labels: list[str], groups: list[str], fracs: dict[str, float], seed: int
) -> list[str]:
    """The split name ("train", "val" or "test") for each row; `fracs` sum to 1."""
    rows_of: dict[str, list[int]] = defaultdict(list)
    for row, group in enumerate(groups):
        rows_of[group].append(row)
    totals = Counter(labels)
    target = {s: {c: fracs[s] * n for c, n in totals.items()} for s in SPLITS}
    placed: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    # Splits with a zero share never receive a group, even when all others are over target.
    candidates = [s for s in SPLITS if fracs[s] > 0]

    rng = np.random.default_rng(seed)
    order = list(rows_of)
    rng.shuffle(order)
    order.sort(key=lambda g: -len(rows_of[g]))  # stable: ties keep the random order

    assigned = [""] * len(labels)
    for group in order:
        counts = Counter(labels[r] for r in rows_of[group])

        def need(split: str, counts: Counter = counts) -> float:
            return sum(n * (target[split][c] - placed[split][c]) for c, n in counts.items())

        split = max(candidates, key=need)  # first of SPLITS wins a tie, i.e. train
        placed[split].update(counts)
        for row in rows_of[group]:
            assigned[row] = split
    return assigned
