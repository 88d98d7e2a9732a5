"""Serving path for an exported bundle: onnxruntime + tokenizers + numpy, no torch/transformers.

Keep it that way: a test imports this module in a fresh interpreter and fails if torch or
transformers end up in sys.modules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from modelfab.errors import InputError, IntegrityError
from modelfab.export.manifest import LABELS, MODEL, PREPROCESS, TOKENIZER, verify_bundle

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def _optimization_level(name: str) -> ort.GraphOptimizationLevel:
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if name not in levels:
        raise IntegrityError(f"bundle asks for unknown graph optimization level {name!r}")
    return levels[name]


def load_tokenizer(tokenizer_json: Path, preprocess: dict) -> Tokenizer:
    """The bundle tokenizer with truncation/padding set from preprocess.json, not whatever
    state the saved tokenizer happened to carry."""
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(preprocess["max_length"]))
    # Pad to the longest text in the batch: a single text is never padded.
    tokenizer.enable_padding(
        pad_id=int(preprocess["pad_id"]),
        pad_token=str(preprocess["pad_token"]),
        direction=str(preprocess.get("padding_side", "right")),
    )
    return tokenizer


def encode(tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Model inputs for `texts`: int64 input_ids and attention_mask, shape (B, T)."""
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"bundle file {path} is unreadable ({exc})") from None


class BundlePredictor:
    """Text classifier served from a bundle directory written by `export_bundle`."""

    def __init__(self, path: Path, threads: int | None = None, batch_size: int = 32):
        if threads is not None and threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.path = Path(path)
        self.threads = threads
        self.batch_size = batch_size
        self.manifest_ = verify_bundle(self.path)
        self.preprocess_ = _read_json(self.path / PREPROCESS)
        self.labels_: list[str] = list(_read_json(self.path / LABELS))
        self.tokenizer_ = load_tokenizer(self.path / TOKENIZER, self.preprocess_)
        options = ort.SessionOptions()
        options.graph_optimization_level = _optimization_level(
            str(self.preprocess_.get("graph_optimization", "all"))
        )
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session_ = ort.InferenceSession(
            str(self.path / MODEL), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(labels)), float32."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise InputError("predict_proba expects a list of strings")
        chunks = [np.zeros((0, len(self.labels_)), dtype=np.float32)]
        for start in range(0, len(texts), self.batch_size):
            inputs = encode(self.tokenizer_, texts[start : start + self.batch_size])
            logits = self.session_.run(["logits"], inputs)[0]
            chunks.append(softmax(logits.astype(np.float32)))
        return np.concatenate(chunks, axis=0)

    def predict(self, texts: Sequence[str]) -> list[dict]:
        """[{"label": best label, "score": its probability}] per text."""
        proba = self.predict_proba(texts)
        best = proba.argmax(axis=1)
        return [
            {"label": self.labels_[i], "score": float(row[i])}
            for i, row in zip(best, proba, strict=True)
        ]
