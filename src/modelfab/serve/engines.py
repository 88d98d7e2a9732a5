"""What runs a batch: a whole-model bundle (BundlePredictor) or a shared backbone with heads.

`Engine.run(items)` takes [(head or None, texts), ...] for one micro-batch and returns one
probability array (len(texts), n_labels) per item. A StudentEngine serves one bundle; a
BackboneEngine runs its backbone once over every text of the batch, whichever of its heads the
requests named, then applies each request's head to its rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from modelfab.errors import IntegrityError
from modelfab.export.heads import EMBEDDING, Head, backbone_sha256
from modelfab.export.manifest import LABELS, MODEL, PREPROCESS, TOKENIZER
from modelfab.export.runtime import BundlePredictor, encode, load_tokenizer, softmax

Item = tuple[Head | None, Sequence[str]]


class Engine(Protocol):
    key: str

    def run(self, items: Sequence[Item]) -> list[np.ndarray]: ...


def _split(proba: np.ndarray, items: Sequence[Item]) -> list[np.ndarray]:
    bounds = np.cumsum([len(texts) for _, texts in items])[:-1]
    return np.split(proba, bounds)


class StudentEngine:
    """One whole-model bundle (student, or teacher with its head baked in)."""

    def __init__(self, path: Path, intra_op_threads: int, max_batch: int, key: str):
        self.predictor = BundlePredictor(path, threads=intra_op_threads, batch_size=max_batch)
        self.key = key
        self.labels = self.predictor.labels_
        classes = self.predictor.predict_proba(["warm-up"]).shape[1]  # also warms the session
        if classes != len(self.labels):
            raise IntegrityError(
                f"bundle {path}: the graph gives {classes} classes, {LABELS} has {len(self.labels)}"
            )

    def run(self, items: Sequence[Item]) -> list[np.ndarray]:
        texts = [t for _, batch in items for t in batch]
        return _split(self.predictor.predict_proba(texts), items)


class BackboneEngine:
    """A frozen backbone (ONNX: input_ids, attention_mask -> embedding) shared by head models."""

    def __init__(self, path: Path, intra_op_threads: int, max_batch: int):
        self.sha256 = backbone_sha256(path)  # verifies the manifest first
        self.key = f"backbone:{self.sha256}"
        self.max_batch = max_batch
        preprocess = json.loads((path / PREPROCESS).read_text(encoding="utf-8"))
        self.tokenizer = load_tokenizer(path / TOKENIZER, preprocess)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path / MODEL), sess_options=options, providers=["CPUExecutionProvider"]
        )
        declared = self.session.get_outputs()[0].shape[-1]  # an int, or a symbolic name
        self.dim = int(preprocess.get("dim") or (declared if isinstance(declared, int) else 0))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        chunks = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, len(texts), self.max_batch):
            inputs = encode(self.tokenizer, texts[start : start + self.max_batch])
            chunks.append(np.asarray(self.session.run([EMBEDDING], inputs)[0], dtype=np.float32))
        return np.concatenate(chunks, axis=0)

    def run(self, items: Sequence[Item]) -> list[np.ndarray]:
        texts = [t for _, batch in items for t in batch]
        out = []
        for (head, _), rows in zip(items, _split(self.embed(texts), items), strict=True):
            assert head is not None, "a backbone request needs its head"
            out.append(softmax(head.logits(rows)))
        return out
