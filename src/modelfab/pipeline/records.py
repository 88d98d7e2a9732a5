"""Scores, bench-format records and final model cards of a build's variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from modelfab.atomic import write_text
from modelfab.bench.results import HEADLINE
from modelfab.export.manifest import write_manifest


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        "accuracy": float(accuracy_score(y_true, y_pred)),
    }


def evaluate(bundle: Path, texts: dict[str, list[str]], y: dict[str, np.ndarray]) -> dict:
    """Validation and test scores of an exported bundle, run as it will be served."""
    from modelfab.export.runtime import BundlePredictor

    predictor = BundlePredictor(bundle)
    return {
        split: scores(y[split], predictor.predict_proba(texts[split]).argmax(1))
        for split in ("val", "test")
    }


def bench_record(
    scenario: str,
    model_id: str,
    variant: str,
    role: str,
    family: str,
    compression: dict,
    split_scores: dict,
    bench: dict | None,
    size_bytes: int,
    cpu_s: float,
    threads: int = 1,
) -> dict:
    """One flat record of `make bench`'s latest.json: accuracy, speed at `threads`, memory,
    size, FLOP/s fraction, cost; the other thread counts ride along under `at_threads`."""
    bench = bench or {}
    at = (bench.get("at_threads") or {}).get(str(threads), {})
    return {
        "scenario": scenario,
        "variant": variant,
        "role": role,
        "family": family,
        "compression": compression,
        "model_id": model_id,
        "macro_f1": split_scores["test"]["macro_f1"],
        "accuracy": split_scores["test"]["accuracy"],
        "val_macro_f1": split_scores["val"]["macro_f1"],
        "threads": threads,
        **{key: at.get(key) for key in HEADLINE},
        "size_bytes": size_bytes,
        "peak_rss_bytes": bench.get("peak_rss_bytes"),
        "load_s": bench.get("load_s"),
        "flops_per_text": bench.get("flops_per_text"),
        "flops_fraction_of_peak": at.get("flops_fraction_fp32"),
        "flops_fraction_of_bf16_peak": at.get("flops_fraction_bf16"),
        "at_threads": {
            k: {key: v.get(key) for key in HEADLINE}
            for k, v in (bench.get("at_threads") or {}).items()
        },
        "train_cpu_s": round(cpu_s, 2),
        "chosen": False,
    }


def bench_metrics(record: dict) -> dict:
    return {k: float(record[k]) for k in HEADLINE if record.get(k) is not None}


def finish_card(bundle: Path, update: dict) -> None:
    """Merge `update` into the bundle's card.json and re-hash the bundle's manifest."""
    card_path = Path(bundle) / "card.json"
    card = json.loads(card_path.read_text())
    card.update(update)
    write_text(card_path, json.dumps(card, indent=2, sort_keys=True, default=str))
    write_manifest(Path(bundle))
