"""Suspect human labels: cross-validated teacher probabilities, ranked by cleanlab.

Each labeled example gets an out-of-sample probability for every class from a logistic
regression on the teacher's features (K-fold, so no example scores itself). Its regularization
is the one of `CS` whose out-of-sample probabilities have the lowest log loss: a weakly
regularized model learns the wrong labels too and stops doubting them (on the few-shot bench's
four facets, C = 10 found 3-9 points fewer flipped labels than C = 1). cleanlab's
self-confidence score (the probability of the given label) ranks the examples, and its
confident-learning filter flags the ones whose given label is likely wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from modelfab.errors import InputError

CS = (0.3, 1.0, 3.0, 10.0)  # inverse regularization strengths tried, weakest last


def out_of_sample_probs(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    folds: int = 5,
    seed: int = 0,
    cs: tuple[float, ...] = CS,
) -> np.ndarray:
    """(N, C) K-fold probabilities at the C of `cs` with the lowest out-of-sample log loss; K
    shrinks to the smallest class's count (at least 2)."""
    x, y = np.asarray(x), np.asarray(y)
    counts = np.bincount(y, minlength=n_classes)
    present = counts[counts > 0]
    if len(present) < 2:
        raise InputError("label quality needs at least two classes with labels")
    if present.min() < 2:
        raise InputError("label quality needs at least 2 labeled examples in every class")
    if not cs:
        raise InputError("label quality needs at least one regularization strength in cs")
    labeled = np.flatnonzero(counts)  # the classes with labels
    k = int(max(2, min(folds, present.min())))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    best: tuple[float, np.ndarray] | None = None
    for c in cs:
        probs = cross_val_predict(
            LogisticRegression(C=c, max_iter=2000), x, y, cv=cv, method="predict_proba"
        )
        loss = log_loss(y, probs, labels=labeled)
        if best is None or loss < best[0]:
            best = (loss, probs)
    assert best is not None
    out = np.zeros((len(y), n_classes))
    out[:, labeled] = best[1]  # classes without labels get probability 0
    return out


def label_issues(
    x: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per labeled example, worst first: `index` (into x/y), `given`, `suggested`,
    `quality` (cleanlab self-confidence in [0, 1]; low = suspect) and `is_issue` (cleanlab's
    confident-learning verdict)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.asarray(y, dtype=np.int64)
    probs = out_of_sample_probs(x, y, len(classes), folds=folds, seed=seed)
    present = np.flatnonzero(np.bincount(y, minlength=len(classes)))
    # cleanlab wants labels 0..K-1 over the classes that occur, and rows summing to 1.
    remap = {c: i for i, c in enumerate(present)}
    local_y = np.array([remap[v] for v in y])
    local_p = probs[:, present]
    local_p = local_p / local_p.sum(1, keepdims=True)
    quality = get_label_quality_scores(local_y, local_p, method="self_confidence")
    # n_jobs=1: no process pool forked from a process that has torch loaded.
    flagged = find_label_issues(local_y, local_p, filter_by="prune_by_noise_rate", n_jobs=1)
    table = pd.DataFrame(
        {
            "index": np.arange(len(y)),
            "given": [classes[v] for v in y],
            "suggested": [classes[present[i]] for i in local_p.argmax(1)],
            "quality": quality,
            "is_issue": flagged,
        }
    )
    return table.sort_values(["quality", "index"], kind="stable").reset_index(drop=True)


def flip_recall(ranked: pd.DataFrame, flipped: np.ndarray, top_frac: float = 0.1) -> float:
    """Share of the `flipped` indices that rank in the worst `top_frac` of `ranked`."""
    flipped = np.asarray(flipped)
    if len(flipped) == 0:
        raise InputError("flip_recall needs at least one flipped example")
    top = set(ranked["index"].head(max(1, round(top_frac * len(ranked)))))
    return float(np.mean([i in top for i in flipped]))
