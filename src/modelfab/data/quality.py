"""Data quality checks on a materialized scenario: duplicates, leakage, label conflicts.

These are the problems that silently inflate a test score (a test text also in train, a source
package split across train and test) or cap it (one text with two labels), so the report
counts them before any model is trained.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer

from modelfab.data.scenario import ScenarioData

LABELED_SPLITS = ("train", "val", "test")
NEAR_THRESHOLD = 0.9
NEAR_SAMPLE = 2000  # rows compared pairwise for near duplicates: bounds the cost on big data


def normalize(text: str) -> str:
    """Lowercase with runs of whitespace collapsed, the key for exact-duplicate checks."""
    return " ".join(str(text).lower().split())


def _labeled(data: ScenarioData) -> pd.DataFrame:
    frames = [getattr(data, s).assign(split=s) for s in LABELED_SPLITS]
    rows = pd.concat(frames, ignore_index=True)
    rows["norm"] = [normalize(t) for t in rows["text"]]
    rows["group"] = rows["group"].astype(str)
    return rows


def near_duplicate_pairs(texts: list[str], seed: int = 0) -> tuple[int, int]:
    """(pairs with char n-gram TF-IDF cosine >= 0.9 but different text, rows compared)."""
    unique = sorted(set(texts))
    if len(unique) > NEAR_SAMPLE:
        rng = np.random.default_rng(seed)
        unique = [unique[i] for i in sorted(rng.choice(len(unique), NEAR_SAMPLE, replace=False))]
    if len(unique) < 2:
        return 0, len(unique)
    try:
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 4), dtype=np.float32)
        matrix = vectorizer.fit_transform([t[:500] for t in unique])
    except ValueError:  # texts too short for any 4-gram
        return 0, len(unique)
    pairs = 0
    for start in range(0, len(unique), 500):  # blocks keep the dense similarity small
        sims = (matrix[start : start + 500] @ matrix.T).toarray()
        rows, cols = np.nonzero(sims >= NEAR_THRESHOLD)
        pairs += int(np.sum(cols > rows + start))  # each pair once, never a row with itself
    return pairs, len(unique)


def quality_report(data: ScenarioData) -> dict:
    """A JSON-serializable dict of counts; the `examples` key holds a few offenders of each."""
    rows = _labeled(data)
    norm_counts = rows["norm"].value_counts()
    train_norms = set(rows.loc[rows["split"] == "train", "norm"])
    held_out = rows[rows["split"] != "train"]
    cross = held_out[held_out["norm"].isin(train_norms)]

    splits_per_group = rows.groupby("group")["split"].nunique()
    leaked = sorted(splits_per_group[splits_per_group > 1].index)
    held_groups = set(held_out["group"])
    unlabeled_leaks = int(data.unlabeled["group"].astype(str).isin(held_groups).sum())

    labels_per_text = rows.groupby("norm")["label"].nunique()
    conflicts = sorted(labels_per_text[labels_per_text > 1].index)
    near, compared = near_duplicate_pairs(rows["norm"].tolist())
    lengths = rows["text"].astype(str).str.len()

    return {
        "n_rows": {s: len(getattr(data, s)) for s in (*LABELED_SPLITS, "unlabeled")},
        "n_classes": len(data.classes),
        "class_counts": {
            s: {str(k): int(v) for k, v in getattr(data, s)["label"].value_counts().items()}
            for s in LABELED_SPLITS
        },
        "exact_duplicates": int(rows["norm"].map(norm_counts).gt(1).sum()),
        "near_duplicates": near,
        "near_duplicates_compared": compared,
        "cross_split_duplicates": len(cross),
        "group_leakage": len(leaked),
        "unlabeled_group_leakage": unlabeled_leaks,
        "empty_texts": int((rows["norm"] == "").sum()),
        "overlong_texts": int((lengths >= data.max_text_chars).sum()),
        "conflicting_labels": len(conflicts),
        "examples": {
            "cross_split_duplicates": cross["text"].astype(str).str[:80].head(3).tolist(),
            "group_leakage": [str(g) for g in leaked[:5]],
            "conflicting_labels": [c[:80] for c in conflicts[:3]],
        },
    }


def format_quality(report: dict) -> str:
    """A few lines for a terminal; problems are flagged with '!'."""
    n = report["n_rows"]

    def flag(count: int) -> str:
        return "!" if count else " "

    problems = [
        ("exact duplicate rows", report["exact_duplicates"]),
        ("near-duplicate pairs", report["near_duplicates"]),
        ("val/test texts also in train", report["cross_split_duplicates"]),
        ("groups in several splits", report["group_leakage"]),
        ("unlabeled rows from val/test groups", report["unlabeled_group_leakage"]),
        ("texts with conflicting labels", report["conflicting_labels"]),
        ("empty texts", report["empty_texts"]),
        ("texts cut at max_text_chars", report["overlong_texts"]),
    ]
    lines = [
        f"rows: train {n['train']}, val {n['val']}, test {n['test']}, "
        f"unlabeled {n['unlabeled']}; {report['n_classes']} classes"
    ]
    lines += [f"{flag(count)} {count:6d} {what}" for what, count in problems]
    return "\n".join(lines)
