"""The build's label stage: suspect human labels out (optional), calibrated teacher labels in.

`screen_train` runs before adaptation: cleanlab ranks the human train labels by cross-validated
teacher probabilities, and with `exclude_label_issues` the flagged rows are left out.
`label_pool` runs after it: the adapted teacher's logits are temperature-scaled on validation,
every pool text gets a label with provenance and confidence, and the whole table (human train
labels plus teacher pool labels) is stored as a dataset version named `<scenario>-labels`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from modelfab.data.scenario import class_indices
from modelfab.data.versions import DatasetStore, safe_name
from modelfab.labels.autolabel import (
    PoolTargets,
    check_table,
    human_labels,
    pool_targets,
    summary,
    teacher_labels,
)
from modelfab.labels.calibrate import Calibration
from modelfab.labels.quality import label_issues
from modelfab.pipeline.config import LabelsConfig


@dataclass
class Screening:
    keep: np.ndarray  # (N_train,) bool
    report: dict = field(default_factory=dict)


def screen_train(
    x: np.ndarray, y: np.ndarray, classes: list[str], cfg: LabelsConfig, seed: int
) -> Screening:
    """Rank the human train labels; drop cleanlab's flagged rows when the config says so."""
    keep = np.ones(len(y), dtype=bool)
    if not cfg.exclude_label_issues:
        return Screening(keep, {"excluded": 0})
    counts = np.bincount(y, minlength=len(classes))
    screenable = counts[y] >= 2  # a class with one label cannot be cross-validated
    if (counts >= 2).sum() < 2:
        return Screening(keep, {"excluded": 0, "skipped": "fewer than 2 classes with 2+ labels"})
    rows = np.flatnonzero(screenable)
    ranked = label_issues(x[rows], y[rows], classes, seed=seed)
    flagged = rows[ranked.loc[ranked["is_issue"], "index"].to_numpy()]
    keep[flagged] = False
    report = {"excluded": int(len(flagged)), "flagged_of": int(len(y))}
    if not screenable.all():
        report["not_screened"] = int((~screenable).sum())  # rows of one-label classes
    return Screening(keep, report)


@dataclass
class PoolLabels:
    targets: PoolTargets
    card: dict  # what the model card and the registry say about the labels


def label_pool(
    *,
    train: pd.DataFrame,
    pool: pd.DataFrame,
    classes: list[str],
    val_logits: np.ndarray,
    val_y: np.ndarray,
    pool_logits: np.ndarray,
    cfg: LabelsConfig,
    home: Path,
    scenario: str,
    source: str,
) -> PoolLabels:
    """Calibrate, label the pool, store the label table as a dataset version, and return the
    students' pool targets for the configured mode."""
    train_classes = np.unique(class_indices(train["label"], classes))
    calibration = Calibration.fit(val_logits, val_y, cfg.target_precision, train_classes)
    table = check_table(
        pd.concat(
            [
                human_labels(train["row_id"], train["text"], train["label"]),
                teacher_labels(pool["row_id"], pool["text"], pool_logits, classes, calibration),
            ]
        )
    )
    version = DatasetStore(home).import_frame(table, name=label_table_name(scenario), source=source)
    teacher_rows = table["provenance"] == "teacher"
    targets = pool_targets(pool_logits, table[teacher_rows], classes, cfg.pool_labels)  # type: ignore[arg-type]
    card = {
        "version": version.id,
        "mode": cfg.pool_labels,
        "calibration": calibration.to_dict(),
        **summary(table),
        "pool_rows_used": int(targets.keep.sum()),
    }
    if len(pool) and not targets.keep.any():
        card["warning"] = (
            "no teacher label cleared its class threshold: the students learned from the human "
            "labels alone; lower --target-precision or use --pool-labels soft"
        )
    return PoolLabels(targets, card)


def label_table_name(scenario: str) -> str:
    """The dataset name of a scenario's label table (any scenario name maps to a valid one)."""
    return safe_name(f"{scenario}-labels")
