"""The adapted teacher labels the unlabeled pool; every label says where it came from.

A label table has one row per text: `row_id` (into the scenario's dataset version), `text`,
`label`, `provenance` ("human", "teacher" or "rule"), `confidence` (1.0 for a person's label,
the calibrated probability for the teacher's) and `accepted` (whether the label clears its
class's threshold for the target precision). It is stored as a dataset version of its own, so
a build names exactly which labels its students learned from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from modelfab.errors import InputError
from modelfab.labels.calibrate import Calibration

PROVENANCES = ("human", "teacher", "rule")
COLUMNS = ["row_id", "text", "label", "provenance", "confidence", "accepted"]


def human_labels(
    row_ids: Sequence[int], texts: Sequence[str], labels: Sequence[str]
) -> pd.DataFrame:
    """A label table for labels a person gave: confidence 1, always accepted."""
    return pd.DataFrame(
        {
            "row_id": np.asarray(row_ids, dtype=np.int64),
            "text": list(texts),
            "label": [str(x) for x in labels],
            "provenance": "human",
            "confidence": 1.0,
            "accepted": True,
        },
        columns=COLUMNS,
    )


def teacher_labels(
    row_ids: Sequence[int],
    texts: Sequence[str],
    logits: np.ndarray,
    classes: Sequence[str],
    calibration: Calibration,
) -> pd.DataFrame:
    """A label table of the teacher's argmax labels with calibrated confidence and acceptance."""
    if len(row_ids) != len(texts) or len(texts) != len(logits):
        raise InputError("teacher_labels needs as many row ids, texts and logit rows")
    probs = calibration.probs(logits)
    pred, conf = probs.argmax(1), probs.max(1)
    return pd.DataFrame(
        {
            "row_id": np.asarray(row_ids, dtype=np.int64),
            "text": list(texts),
            "label": [str(classes[i]) for i in pred],
            "provenance": "teacher",
            "confidence": conf.astype(np.float64),
            "accepted": conf >= calibration.thresholds[pred],
        },
        columns=COLUMNS,
    )


def check_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its columns in order; a clear error for a malformed one."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"label table lacks columns {missing}; it needs {COLUMNS}")
    bad = sorted(set(table["provenance"]) - set(PROVENANCES))
    if bad:
        raise InputError(f"unknown label provenance {bad}; known: {list(PROVENANCES)}")
    conf = table["confidence"].astype(float)
    if ((conf < 0) | (conf > 1) | conf.isna()).any():
        raise InputError("label confidence must be in [0, 1]")
    return table[COLUMNS].reset_index(drop=True)


@dataclass
class PoolTargets:
    """What students learn from on the pool, given a labeling mode."""

    keep: np.ndarray  # (N,) bool: pool rows the students see
    hard: np.ndarray  # (N,) class index, -1 for soft-only rows
    logits: np.ndarray  # (N, C) the targets' logits


def pool_targets(
    logits: np.ndarray,
    table: pd.DataFrame,
    classes: Sequence[str],
    mode: Literal["soft", "hard"],
) -> PoolTargets:
    """Targets for the pool rows of `table` (same order as `logits`).

    "soft": every row, the teacher's full distribution (knowledge distillation).
    "hard": only accepted rows, each as its teacher label (one-hot targets plus cross-entropy):
    what a pseudo-labeling pipeline with a precision target trains on.
    """
    if mode not in ("soft", "hard"):
        raise InputError(f"pool label mode must be soft or hard, not {mode!r}")
    n = len(logits)
    if len(table) != n:
        raise InputError(f"{len(table)} label rows for {n} pool rows")
    if mode == "soft":
        return PoolTargets(np.ones(n, dtype=bool), np.full(n, -1), np.asarray(logits))
    index = {c: i for i, c in enumerate(classes)}
    hard = np.array([index[str(c)] for c in table["label"]], dtype=np.int64)
    one_hot = np.full((n, len(classes)), -20.0, dtype=np.float32)
    one_hot[np.arange(n), hard] = 20.0
    return PoolTargets(table["accepted"].to_numpy(bool), hard, one_hot)


def summary(table: pd.DataFrame) -> dict:
    """Counts per provenance, acceptance rate and mean confidence of the teacher's labels."""
    teacher = table[table["provenance"] == "teacher"]
    return {
        "rows": len(table),
        "by_provenance": table["provenance"].value_counts().to_dict(),
        "teacher_accepted": int(teacher["accepted"].sum()),
        "teacher_accept_rate": float(teacher["accepted"].mean()) if len(teacher) else None,
        "teacher_mean_confidence": float(teacher["confidence"].mean()) if len(teacher) else None,
    }
