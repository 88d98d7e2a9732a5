"""Bag-of-tokens bundles built from numpy and onnx.helper (no torch): random weights, the same
inputs, outputs, files and manifest as exported students. The serve tests and `make bench-serve`
use them to exercise the server without a training run; they classify nothing useful.

    bag_onnx:  (input_ids, attention_mask) -> masked mean of token vectors (B, D)
               [-> linear head (B, C) as "logits"]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelfab.atomic import staged_dir, write_text
from modelfab.export.heads import EMBEDDING, write_backbone_bundle, write_head_bundle
from modelfab.export.manifest import CARD, LABELS, MODEL, PREPROCESS, TOKENIZER, write_manifest

OPSET = 17


def word_tokenizer_json(words: list[str], path: Path) -> Path:
    """A small lower-casing WordPiece tokenizer ([PAD]=0, [UNK]=1) saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.save(str(path))
    return path


def bag_onnx(vocab_size: int, dim: int, n_classes: int | None, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((vocab_size, dim)).astype(np.float32)
    inits = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "seq"),
        numpy_helper.from_array(np.array(1e-9, dtype=np.float32), "eps"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["emb"]),  # (B, T, D)
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),  # (B, T, 1)
        helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "seq"], ["summed"], keepdims=0),  # (B, D)
        helper.make_node("ReduceSum", ["mask3", "seq"], ["count"], keepdims=0),  # (B, 1)
        helper.make_node("Max", ["count", "eps"], ["safe"]),
    ]
    if n_classes is None:
        nodes.append(helper.make_node("Div", ["summed", "safe"], [EMBEDDING]))
        out = helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["batch", dim])
    else:
        weight = rng.standard_normal((dim, n_classes)).astype(np.float32)
        inits += [
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(np.zeros(n_classes, dtype=np.float32), "bias"),
        ]
        nodes += [
            helper.make_node("Div", ["summed", "safe"], ["mean"]),
            helper.make_node("Gemm", ["mean", "weight", "bias"], ["logits"]),
        ]
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_classes])
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
        for n in ("input_ids", "attention_mask")
    ]
    graph = helper.make_graph(nodes, "bag", inputs, [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def preprocess(max_length: int, output: str = "logits") -> dict:
    return {
        "max_length": max_length,
        "pad_id": 0,
        "pad_token": "[PAD]",
        "padding_side": "right",
        "input_names": ["input_ids", "attention_mask"],
        "output": output,
        "graph_optimization": "all",
    }


def _vocab_size(tokenizer_json: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_json)).get_vocab_size()


def student_bundle(
    out_dir: Path, tokenizer_json: Path, labels: list[str], dim: int = 16, seed: int = 0,
    max_length: int = 64,
) -> Path:  # fmt: skip
    """A whole-model bundle (model.onnx -> logits) over `tokenizer_json`."""
    model = bag_onnx(_vocab_size(tokenizer_json), dim, len(labels), seed)
    with staged_dir(Path(out_dir)) as stage:
        onnx.save(model, str(stage / MODEL))
        (stage / TOKENIZER).write_bytes(Path(tokenizer_json).read_bytes())
        write_text(stage / PREPROCESS, json.dumps(preprocess(max_length)))
        write_text(stage / LABELS, json.dumps(labels))
        write_text(stage / CARD, json.dumps({"synthetic": "random bag-of-tokens student"}))
        write_manifest(stage)
    return Path(out_dir)


def backbone_bundle(
    root: Path, tokenizer_json: Path, dim: int = 16, seed: int = 0, max_length: int = 64
) -> Path:
    """A backbone bundle (model.onnx -> embedding) under `root/<sha256>/`."""
    model = bag_onnx(_vocab_size(tokenizer_json), dim, None, seed)
    tmp = Path(root) / f".synthetic-backbone-{seed}.onnx"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        onnx.save(model, str(tmp))
        return write_backbone_bundle(
            root,
            onnx_path=tmp,
            tokenizer_json=tokenizer_json,
            preprocess={**preprocess(max_length, EMBEDDING), "dim": dim},
            card={"synthetic": "random bag-of-tokens backbone"},
        )
    finally:
        tmp.unlink(missing_ok=True)


def head_bundle(
    out_dir: Path, backbone_dir: Path, labels: list[str], dim: int, seed: int = 0,
    kind: str = "logistic", hidden: int = 8,
) -> Path:  # fmt: skip
    rng = np.random.default_rng(seed)
    c = len(labels)
    if kind == "logistic":
        tensors = {"weight": rng.standard_normal((c, dim)), "bias": rng.standard_normal(c)}
    else:
        tensors = {
            "w1": rng.standard_normal((hidden, dim)),
            "b1": rng.standard_normal(hidden),
            "w2": rng.standard_normal((c, hidden)),
            "b2": rng.standard_normal(c),
        }
    return write_head_bundle(
        out_dir,
        kind=kind,
        tensors={k: v.astype(np.float32) for k, v in tensors.items()},
        labels=labels,
        backbone_sha256=Path(backbone_dir).name,
        card={"synthetic": f"random {kind} head"},
    )
