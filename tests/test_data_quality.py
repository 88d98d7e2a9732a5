"""quality_report finds planted duplicates, label conflicts and group leaks."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from modelfab.data.quality import format_quality, quality_report
from modelfab.data.scenario import ScenarioData


def split(rows: list[tuple[str, str, str]], start: int) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"text": t, "label": label, "group": g, "row_id": start + i}
            for i, (t, label, g) in enumerate(rows)
        ]
    )


def clean() -> dict[str, list[tuple[str, str, str]]]:
    return {
        "train": [
            ("a terminal text editor", "editors", "g1"),
            ("network packet sniffer", "net", "g2"),
            ("puzzle game with blocks", "games", "g3"),
        ],
        "val": [("a music player for the desktop", "sound", "g4")],
        "test": [("library for parsing xml documents", "libs", "g5")],
    }


def data_from(parts, max_text_chars: int = 2000) -> ScenarioData:
    frames = {name: split(rows, 100 * i) for i, (name, rows) in enumerate(parts.items())}
    labels = sorted({r[1] for rows in parts.values() for r in rows})
    unlabeled = pd.DataFrame({"text": ["spare"], "group": ["g9"], "row_id": [999]})
    return ScenarioData(
        **frames, unlabeled=unlabeled, classes=labels, max_text_chars=max_text_chars
    )


def test_clean_data_reports_nothing():
    report = quality_report(data_from(clean()))
    json.dumps(report)  # serializable
    for key in (
        "exact_duplicates",
        "near_duplicates",
        "cross_split_duplicates",
        "group_leakage",
        "conflicting_labels",
        "empty_texts",
        "overlong_texts",
    ):
        assert report[key] == 0, key
    assert report["class_counts"]["train"] == {"editors": 1, "net": 1, "games": 1}
    assert "train 3, val 1, test 1" in format_quality(report)


def test_duplicate_across_train_and_test_is_found():
    parts = clean()
    parts["test"].append(("A  Terminal text EDITOR ", "editors", "g7"))  # same after normalizing
    report = quality_report(data_from(parts))
    assert report["exact_duplicates"] == 2
    assert report["cross_split_duplicates"] == 1
    assert report["conflicting_labels"] == 0


def test_conflicting_labels_are_found():
    parts = clean()
    parts["train"].append(("network packet sniffer", "admin", "g8"))
    report = quality_report(data_from(parts))
    assert report["conflicting_labels"] == 1
    assert report["examples"]["conflicting_labels"] == ["network packet sniffer"]


def test_group_leak_is_found():
    parts = clean()
    parts["test"].append(("another package from the same source", "net", "g2"))
    report = quality_report(data_from(parts))
    assert report["group_leakage"] == 1
    assert report["examples"]["group_leakage"] == ["g2"]
    assert "! " in format_quality(report)


def test_near_duplicates_empty_and_overlong():
    parts = clean()
    long = "a small and fast terminal text editor with syntax highlighting for many languages"
    parts["train"].append((long, "editors", "g10"))
    parts["test"].append((long + " v2", "editors", "g13"))
    parts["val"].append(("   ", "sound", "g11"))
    parts["val"].append(("x" * 100, "sound", "g12"))
    report = quality_report(data_from(parts, max_text_chars=100))
    assert report["near_duplicates"] == 1
    assert report["empty_texts"] == 1
    assert report["overlong_texts"] == 1


def test_report_is_fast_on_20k_rows():
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(3000)])
    texts = [" ".join(rng.choice(words, 60)) for _ in range(20000)]
    rows = [(t, f"c{i % 40}", f"g{i // 3}") for i, t in enumerate(texts)]
    parts = {"train": rows[:14000], "val": rows[14000:16000], "test": rows[16000:]}
    start = time.perf_counter()
    quality_report(data_from(parts))
    assert time.perf_counter() - start < 5
