"""Which unlabeled examples are worth a person's time next.

Strategies over the adapted teacher's probabilities and features of the pool:
- "uncertainty": the K smallest margins (top-1 minus top-2 probability);
- "diversity": one example per K-means cluster of the pool's features (nearest the centre);
- "uncertainty-diversity": the most uncertain 10*K candidates, clustered into K
  groups, the most uncertain of each group: uncertain examples that are not near-duplicates
  of one another (cluster-margin selection);
- "balanced" (default): an equal share of the K picks for each class the teacher predicts,
  each share picked by cluster-margin selection among the rows predicted as that class (what a
  class predicted for few rows cannot fill goes to the most uncertain rows left): uncertain,
  diverse examples of the rare classes too, which macro-F1 weighs as much as the common ones;
- "random": the baseline any strategy must beat.

The queue is written as CSV or JSONL for people to fill in the `label` column; answers come back
with `read_answers` and become a new dataset version with `apply_answers`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from modelfab.atomic import write_text
from modelfab.errors import InputError

STRATEGIES = ("balanced", "uncertainty-diversity", "uncertainty", "diversity", "random")
DEFAULT_STRATEGY = "balanced"


def margins(probs: np.ndarray) -> np.ndarray:
    """(N,) top-1 minus top-2 probability: small = the teacher hesitates between two classes."""
    top2 = np.sort(np.asarray(probs), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _normalized(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def _cluster_pick(x: np.ndarray, k: int, score: np.ndarray | None, seed: int) -> np.ndarray:
    """Indices: per K-means cluster of x, the row with the highest `score` (None: the row
    nearest the cluster's centre)."""
    xn = _normalized(x)
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(xn)
    labels = km.labels_
    if score is None:
        score = -km.transform(xn).min(1)
    picks = [np.flatnonzero(labels == c)[np.argmax(score[labels == c])] for c in range(k)]
    return np.array(sorted(picks), dtype=np.int64)


def _cluster_margin(
    x: np.ndarray, uncertainty: np.ndarray, rows: np.ndarray, k: int, per_pick: int, seed: int
) -> np.ndarray:
    """Of `rows`, `k`: the most uncertain k * per_pick clustered into k groups, the most
    uncertain row of each group."""
    if k >= len(rows):
        return np.sort(rows)
    cand = rows[np.argsort(-uncertainty[rows], kind="stable")[: k * per_pick]]
    return np.sort(cand[_cluster_pick(x[cand], k, uncertainty[cand], seed)])


def _balanced(
    probs: np.ndarray, x: np.ndarray, uncertainty: np.ndarray, k: int, per_pick: int, seed: int
) -> np.ndarray:
    """`k` indices: per predicted class its share of k (the remainder to classes drawn by
    `seed`) by `_cluster_margin` over the rows predicted as it; the shares a class's rows cannot
    fill go to the most uncertain rows not picked."""
    n_classes = probs.shape[1]
    pred = probs.argmax(1)
    shares = np.full(n_classes, k // n_classes)
    shares[np.random.default_rng(seed).permutation(n_classes)[: k % n_classes]] += 1
    picks = [
        _cluster_margin(x, uncertainty, np.flatnonzero(pred == c), int(shares[c]), per_pick, seed)
        for c in range(n_classes)
        if shares[c]
    ]
    chosen = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    if len(chosen) < k:
        rest = np.setdiff1d(np.arange(len(probs)), chosen)
        order = rest[np.argsort(-uncertainty[rest], kind="stable")]
        chosen = np.concatenate([chosen, order[: k - len(chosen)]])
    return np.sort(chosen.astype(np.int64))


def select(
    probs: np.ndarray,
    features: np.ndarray,
    k: int,
    strategy: str = DEFAULT_STRATEGY,
    seed: int = 0,
    candidates_per_pick: int = 10,
) -> np.ndarray:
    """Indices (into the pool) of the `k` examples to label next."""
    if strategy not in STRATEGIES:
        raise InputError(f"unknown selection strategy {strategy!r}; known: {list(STRATEGIES)}")
    n = len(probs)
    if len(features) != n:
        raise InputError(f"{len(features)} feature rows for {n} probability rows")
    if k < 1:
        raise InputError(f"the number of examples to pick must be >= 1, not {k}")
    if k >= n:
        return np.arange(n)
    uncertainty = -margins(probs)
    if strategy == "random":
        return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
    if strategy == "uncertainty":
        return np.sort(np.argsort(-uncertainty, kind="stable")[:k])
    if strategy == "diversity":
        return _cluster_pick(features, k, None, seed)
    if strategy == "balanced":
        return _balanced(probs, features, uncertainty, k, candidates_per_pick, seed)
    return _cluster_margin(features, uncertainty, np.arange(n), k, candidates_per_pick, seed)


def queue_frame(
    row_ids: np.ndarray, texts: list[str], probs: np.ndarray, classes: list[str], picks: np.ndarray
) -> pd.DataFrame:
    """The labeling queue: row_id, text, the teacher's suggestion and confidence, empty label."""
    p = np.asarray(probs)[picks]
    return pd.DataFrame(
        {
            "row_id": np.asarray(row_ids)[picks].astype(np.int64),
            "text": [texts[i] for i in picks],
            "suggested": [classes[i] for i in p.argmax(1)],
            "confidence": p.max(1).round(4),
            "label": "",
        }
    )


def write_queue(queue: pd.DataFrame, path: Path) -> Path:
    """Write a table (the queue, a label-issue ranking) as .csv or .jsonl by suffix, atomically."""
    path = Path(path)
    if path.suffix == ".csv":
        write_text(path, queue.to_csv(index=False))
    elif path.suffix in (".jsonl", ".json"):
        lines = [json.dumps(r, ensure_ascii=False) for r in queue.to_dict(orient="records")]
        write_text(path, "\n".join(lines) + "\n")
    else:
        raise InputError(f"output file {path.name}: use a .csv or .jsonl name")
    return path


def _cell(value) -> str:
    """An answer cell as stripped text; None, NaN and blanks are ''."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def read_answers(path: Path, classes: list[str] | None = None) -> pd.DataFrame:
    """row_id and label of every answered queue row; unanswered rows are skipped.

    With `classes`, an answer outside them is an error naming the row (a typo would otherwise
    create a new class silently).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"answers file {path} does not exist")
    try:
        if path.suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            df = pd.read_json(path, lines=True, dtype=False)
    except ValueError as exc:
        raise InputError(f"answers file {path}: cannot parse ({exc})") from None
    missing = [c for c in ("row_id", "label") if c not in df.columns]
    if missing:
        raise InputError(f"answers file {path}: missing column(s) {missing}")
    df["label"] = [_cell(v) for v in df["label"]]
    df = df[df["label"] != ""]
    row_ids = pd.to_numeric(df["row_id"], errors="coerce")
    bad = row_ids.isna() | (row_ids != row_ids.round())
    if bad.any():
        raise InputError(
            f"answers file {path}: row_id {df.loc[bad, 'row_id'].iloc[0]!r} is not a row number"
        )
    df = df.assign(row_id=row_ids.astype(np.int64))
    if classes is not None:
        unknown = df[~df["label"].isin(classes)]
        if len(unknown):
            row = unknown.iloc[0]
            raise InputError(
                f"answers file {path}: row_id {row['row_id']} has label {row['label']!r}, "
                f"not one of the scenario's classes {classes}"
            )
    if df["row_id"].duplicated().any():
        dup = df.loc[df["row_id"].duplicated(), "row_id"].iloc[0]
        raise InputError(f"answers file {path}: row_id {dup} is answered twice")
    return df[["row_id", "label"]].astype({"row_id": np.int64}).reset_index(drop=True)


def apply_answers(frame: pd.DataFrame, label_field: str, answers: pd.DataFrame) -> pd.DataFrame:
    """A copy of the dataset rows with the answered labels written into `label_field`."""
    if label_field not in frame.columns:
        raise InputError(f"the dataset has no label column {label_field!r}")
    bad = answers[(answers["row_id"] < 0) | (answers["row_id"] >= len(frame))]
    if len(bad):
        raise InputError(f"answer row_id {int(bad['row_id'].iloc[0])} is not a row of the dataset")
    out = frame.reset_index(drop=True).copy()
    out[label_field] = out[label_field].astype(object)
    out.loc[answers["row_id"].to_numpy(), label_field] = answers["label"].to_numpy()
    return out
